//! `kiln reconstruct`: photos (a folder or a `.zip`) to exported models in one job folder, as
//! [`kiln_job::run_job`] runs it: check → poses → train → mesh → export. The settings are the
//! flags over the photos' `kiln.toml` job spec, when there is one (the input may name the spec
//! itself: [`crate::settings`]). One progress line on stderr (stage, fraction, overall ETA),
//! Ctrl-C stops the job resumably (a second Ctrl-C quits at once), and a summary at the end;
//! `--json` prints `report.json` on stdout. Running the same command again goes on where the job
//! stopped.
//!
//! When `KILN_GLTF_VALIDATOR` / `KILN_USDZ_VALIDATOR` name validator programs (each takes the
//! file's path and exits 0 when it passes), the exported GLB / USDZ go through them and the
//! results are added to `report.json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_job::report::JobReport;
use kiln_job::validate::{Validators, validate_outputs};
use kiln_job::verdict::ModelVerdict;
use kiln_job::{EventKind, JobEvent, run_job};

use crate::cloud::placement::{self, Where};
use crate::cloud::submit::{self, CloudJobArgs};
use crate::interrupt;
use crate::settings::SettingsArgs;

#[derive(clap::Args)]
pub struct ReconstructArgs {
    /// A folder of photos (.jpg, .jpeg, .png, searched recursively; its kiln.toml, when there is
    /// one, gives the job's settings), a .zip of them, or a kiln.toml job spec (the photos are in
    /// its folder). Flags given override the spec. Only read.
    pub input: PathBuf,
    /// The job folder (created if missing). The same command on the same folder resumes the job.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Print report.json on stdout (in the cloud: the submission's summary).
    #[arg(long)]
    pub json: bool,
    /// Where the job runs: local (the default), cloud (the hosted service: quote, upload, remote
    /// run, outputs downloaded into --out) or auto (local when a hardware GPU with enough memory
    /// is present, the cloud otherwise; the decision and why are printed before anything runs).
    #[arg(long = "where", value_enum, default_value_t = Where::Local)]
    pub place: Where,
    #[command(flatten)]
    pub cloud: CloudJobArgs,
}

/// Resolution of the progress bar (the job fraction is drawn in thousandths).
const BAR_UNITS: u64 = 1000;

pub fn run(args: &ReconstructArgs) -> Result<()> {
    let job = args.settings.job_input(&args.input)?;
    let (place, why) = placement::decide(args.place);
    if let Some(why) = why {
        eprintln!("--where auto: {why}");
    }
    if place == Where::Cloud {
        return submit::reconstruct(&job, &args.out, &args.cloud, args.json);
    }
    if let Some(from) = job.settings_from() {
        eprintln!("{from}");
    }
    let settings = job.overrides.settings();
    let cancel = interrupt::cancel_on_ctrl_c();
    let mut display = Display::new();
    let result = run_job(&job.photos, &args.out, &settings, &cancel, &mut |event| display.show(event));
    display.finish();
    let mut report = result?;
    validate_outputs(&mut report, &Validators::from_env())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    print_summary(&report);
    if report.verdict == Some(ModelVerdict::Failed) {
        return Err(ModelFailed { job_dir: report.job_dir.clone() }.into());
    }
    Ok(())
}

/// The job finished, but its own verdict says the model is not the object (exit code 3).
#[derive(Debug)]
pub struct ModelFailed {
    pub job_dir: std::path::PathBuf,
}

impl std::fmt::Display for ModelFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the model failed its own check against the held-out photos (the findings above say why); it is kept as \
             model.failed.* in {}",
            self.job_dir.join("export").display()
        )
    }
}

impl std::error::Error for ModelFailed {}

/// The one progress line, with a line per stage as it ends.
struct Display {
    bar: ProgressBar,
}

impl Display {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(BAR_UNITS), ProgressDrawTarget::stderr());
        // The template is a compile-time constant; a bad one would only lose the styling.
        if let Ok(style) = ProgressStyle::with_template("{prefix:>7} [{bar:30}] {percent:>3}% · {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    fn show(&mut self, event: &JobEvent) {
        self.bar.set_prefix(event.stage.to_string());
        self.bar.set_position((event.job_fraction * BAR_UNITS as f64).round() as u64);
        let eta = event.eta_s.map_or_else(String::new, |s| format!(" · ETA {}", duration(s)));
        match event.kind {
            EventKind::Started | EventKind::Progress => {
                self.bar.set_message(format!(
                    "{:.0}% of {}: {}{eta}",
                    100.0 * event.stage_fraction,
                    event.stage,
                    event.message
                ));
            }
            EventKind::Skipped => self.line(format!("{:>7}: skipped, {}", event.stage, event.message)),
            EventKind::Finished => self.line(format!("{:>7}: {}", event.stage, event.message)),
            EventKind::Failed => self.line(format!("{:>7}: failed", event.stage)),
        }
    }

    /// A line above the bar (printed even where the bar is hidden, e.g. stderr is not a terminal).
    fn line(&self, text: String) {
        self.bar.suspend(|| eprintln!("{text}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `95 s`, `4 min 10 s`, `1 h 5 min`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn print_summary(report: &JobReport) {
    eprintln!("job {} in {}", report.job_dir.display(), duration(report.seconds));
    for stage in &report.stages {
        let seconds = stage.seconds.map_or_else(|| "-".to_string(), |s| format!("{s:.1} s"));
        eprintln!(
            "  {:<7} {:<13} {seconds:>9}  {}",
            stage.stage.to_string(),
            format!("{:?}", stage.status).to_lowercase(),
            stage.message
        );
    }
    let metrics = &report.metrics;
    if let Some(poses) = &metrics.poses {
        eprintln!("registered photos: {}/{}", poses.registered_images, poses.photos);
    }
    if let Some(train) = &metrics.train {
        let psnr = train.psnr.map_or_else(|| "no test views".into(), |p| format!("{p:.2} dB"));
        eprintln!("held-out PSNR: {psnr} ({} splats, {})", train.splats, train.device);
    }
    if let Some(mesh) = &metrics.mesh {
        eprintln!("triangles: {}", mesh.triangles);
    }
    if let Some(verdict) = report.verdict {
        let quality = metrics.quality.as_ref().map_or_else(String::new, |q| {
            let psnr = q.mesh_psnr.map_or_else(String::new, |p| format!(", textured mesh {p:.1} dB"));
            format!(
                " (held-out silhouette IoU {:.2}, depth agreement {:.2}{psnr})",
                q.silhouette_iou, q.depth_agreement
            )
        });
        eprintln!("verdict: {}{quality}", format!("{verdict:?}").to_lowercase());
        for finding in &report.findings {
            eprintln!("  {}: {}", format!("{:?}", finding.severity).to_lowercase(), finding.message);
        }
    }
    for file in report.outputs() {
        eprintln!("wrote {} ({:.2} MB)", file.path.display(), file.bytes as f64 / 1e6);
    }
    for validator in &report.validators {
        eprintln!("{} {}", if validator.passed { "valid:" } else { "INVALID:" }, validator.file.display());
    }
}
