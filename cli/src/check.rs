//! `kiln check`: the capture check of a folder of photos before any compute is spent on it. Prints
//! a table of the photos with problems, the set's summary, the predicted outcome and advice
//! (`--json`: the report). Exit code 0 when a job can proceed, 2 (bad input) when the set cannot
//! work. Progress bars on stderr.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kiln_check::{CheckOptions, CheckReport, FocalSource, Outcome, SetSummary, Verdict, check_photos};
use kiln_sfm::SfmError;

use crate::progress::StageBar;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Folder of photos (.jpg, .jpeg, .png, searched recursively). It is only read.
    pub photos: PathBuf,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CheckArgs) -> Result<()> {
    if !args.photos.is_dir() {
        return Err(SfmError::Unusable { input: args.photos.clone(), problem: "not a folder of photos".into() }.into());
    }
    let mut bars = Bars::default();
    let report = check_photos(&args.photos, &CheckOptions::default(), &mut |done, total, phase| {
        bars.update(done, total, phase.name())
    });
    bars.finish();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if report.can_proceed() {
        return Ok(());
    }
    let problem = report.advice.first().cloned().unwrap_or_else(|| "this photo set cannot work".into());
    Err(SfmError::Unusable { input: args.photos.clone(), problem }.into())
}

/// One bar per step (a new one when the message or total changes).
#[derive(Default)]
struct Bars {
    current: Option<(String, usize, StageBar)>,
}

impl Bars {
    fn update(&mut self, done: usize, total: usize, message: &str) {
        if self.current.as_ref().is_none_or(|(m, t, _)| m != message || *t != total) {
            self.finish();
            self.current = Some((message.to_string(), total, StageBar::new("check", total as u64)));
        }
        if let Some((_, _, bar)) = &self.current {
            bar.update(done as u64, message.to_string());
        }
    }

    fn finish(&mut self) {
        if let Some((message, _, bar)) = self.current.take() {
            bar.finish(message);
        }
    }
}

/// The report as text: problem photos, summary, outcome, advice.
fn human(report: &CheckReport) -> String {
    let mut out = String::new();
    let problems: Vec<_> = report.photos.iter().filter(|p| p.verdict != Verdict::Good).collect();
    if !problems.is_empty() {
        let name = |path: &Path| path.strip_prefix(&report.input).unwrap_or(path).display().to_string();
        let width = problems.iter().map(|p| name(&p.path).chars().count()).max().unwrap_or(5).max(5);
        out += &format!("{:<width$}  {:<7}  findings\n", "photo", "verdict");
        for photo in &problems {
            let verdict = match photo.verdict {
                Verdict::Reject => "reject",
                Verdict::Warn => "warn",
                Verdict::Good => "good",
            };
            for (k, finding) in photo.findings.iter().filter(|f| f.verdict != Verdict::Good).enumerate() {
                let (shown_name, shown_verdict) =
                    if k == 0 { (name(&photo.path), verdict) } else { (String::new(), "") };
                out += &format!("{shown_name:<width$}  {shown_verdict:<7}  {}\n", finding.message);
            }
        }
        out += "\n";
    }
    let s = &report.summary;
    out += &format!(
        "{} photos, {} usable · {} camera setting(s) · {} of {} matched pairs overlap · {} group(s) · {} · {:.1} s\n",
        s.photos,
        s.usable,
        s.cameras.len(),
        s.pairs_overlapping,
        s.pairs_matched,
        s.components.len(),
        if s.loop_closed { "closes a loop around the object" } else { "no closed loop" },
        s.seconds
    );
    out += &coverage_line(s);
    out += match report.outcome {
        Outcome::Good => "outcome: good — expect a complete model\n",
        Outcome::Risky => "outcome: risky — a model is likely, with gaps or lower quality\n",
        Outcome::WillFail => "outcome: will fail — this set cannot give a model\n",
    };
    for line in &report.advice {
        out += &format!("  - {line}\n");
    }
    out
}

/// The focal length(s) the coverage estimate rests on and the widest range of directions no photo
/// looks from (or why it is not known).
fn coverage_line(s: &SetSummary) -> String {
    if s.focal_lengths.is_empty() {
        return String::new();
    }
    let focals: Vec<String> = s
        .focal_lengths
        .iter()
        .map(|f| match f.source {
            FocalSource::Exif => format!("{:.0} px (EXIF)", f.focal_px),
            FocalSource::SelfCalibrated => format!("{:.0} px (estimated from the photos; no EXIF)", f.focal_px),
            FocalSource::Guessed => format!("unknown (no EXIF; {:.0} px guessed)", f.focal_px),
        })
        .collect();
    let gap = match (s.largest_gap_deg, s.largest_gap_range_deg, &s.coverage_unknown) {
        (Some(gap), _, _) => format!("{gap:.0}°"),
        (None, Some((narrowest, widest)), _) => {
            format!("{narrowest:.0}°–{widest:.0}° (over the plausible focal lengths)")
        }
        (None, None, Some(reason)) => format!("unknown ({reason})"),
        (None, None, None) => "unknown".into(),
    };
    format!("focal length {} · widest range of directions no photo looks from: {gap}\n", focals.join(", "))
}
