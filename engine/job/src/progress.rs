//! Turns stage progress into [`JobEvent`]s: the job fraction (stages weighted by their typical
//! cost) and an overall ETA from the rate of this call's work so far.

use std::time::{Duration, Instant};

use kiln_protocol::{EventKind, JobEvent, JobSettings, Phase, Stage, Step, TrainMetrics};

/// Typical share of a job's time per stage, in [`Stage::ALL`] order, from preview runs on a
/// 2-core CPU (bunny-synth): pose estimation and training dominate, the check and the export
/// take seconds.
const STAGE_WEIGHTS: [f64; 5] = [3.0, 30.0, 50.0, 14.0, 3.0];

/// Progress events closer together than this are dropped (the first and last of a stage never
/// are): a display cannot show more, and a training step can take well under a millisecond.
const MIN_EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// No ETA before this much of this call's work was seen, nor before this many seconds: the
/// first moments (loading, listing) say little about the rest.
const ETA_MIN_FRACTION: f64 = 0.01;
const ETA_MIN_SECONDS: f64 = 2.0;

pub(crate) struct Reporter<'a> {
    sink: &'a mut dyn FnMut(&JobEvent),
    /// Normalised weights; zero for stages the job does not run.
    weights: [f64; 5],
    /// When this call's first stage started running, and the job fraction then.
    work_start: Option<(Instant, f64)>,
    last_progress: Option<Instant>,
}

impl<'a> Reporter<'a> {
    pub fn new(settings: &JobSettings, sink: &'a mut dyn FnMut(&JobEvent)) -> Self {
        let mut weights = [0.0; 5];
        for (i, stage) in Stage::ALL.iter().enumerate() {
            if settings.runs(*stage) {
                weights[i] = STAGE_WEIGHTS[i];
            }
        }
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            weights.iter_mut().for_each(|w| *w /= total);
        }
        Self { sink, weights, work_start: None, last_progress: None }
    }

    pub fn started(&mut self, stage: Stage, message: String) {
        if self.work_start.is_none() {
            self.work_start = Some((Instant::now(), self.job_fraction(stage, 0.0)));
        }
        self.last_progress = None;
        self.emit(stage, EventKind::Started, 0.0, message, None);
    }

    /// Progress within `stage`, `fraction` in 0..=1 (clamped); throttled.
    pub fn progress(&mut self, stage: Stage, fraction: f64, update: Update) {
        let now = Instant::now();
        if self.last_progress.is_some_and(|last| now - last < MIN_EVENT_INTERVAL) && fraction < 1.0 {
            return;
        }
        self.last_progress = Some(now);
        let message = update.message();
        let Update { phase, step, metrics, .. } = update;
        self.send(JobEvent {
            phase: Some(phase),
            step,
            metrics,
            ..self.event(stage, EventKind::Progress, fraction, message)
        });
    }

    pub fn skipped(&mut self, stage: Stage, message: String) {
        self.emit(stage, EventKind::Skipped, 1.0, message, None);
    }

    pub fn finished(&mut self, stage: Stage, message: String, preview: Option<std::path::PathBuf>) {
        self.emit(stage, EventKind::Finished, 1.0, message, preview);
    }

    pub fn failed(&mut self, stage: Stage, message: String) {
        self.emit(stage, EventKind::Failed, 0.0, message, None);
    }

    /// The job's fraction done at `fraction` of `stage`.
    fn job_fraction(&self, stage: Stage, fraction: f64) -> f64 {
        let index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        let before: f64 = self.weights[..index].iter().sum();
        (before + self.weights[index] * fraction.clamp(0.0, 1.0)).clamp(0.0, 1.0)
    }

    fn eta(&self, job_fraction: f64) -> Option<f64> {
        let (start, start_fraction) = self.work_start?;
        let elapsed = start.elapsed().as_secs_f64();
        let done = job_fraction - start_fraction;
        (elapsed >= ETA_MIN_SECONDS && done >= ETA_MIN_FRACTION).then(|| elapsed * (1.0 - job_fraction) / done)
    }

    fn emit(
        &mut self,
        stage: Stage,
        kind: EventKind,
        fraction: f64,
        message: String,
        preview: Option<std::path::PathBuf>,
    ) {
        self.send(JobEvent { preview, ..self.event(stage, kind, fraction, message) });
    }

    /// An event without phase, step, metrics or preview.
    fn event(&self, stage: Stage, kind: EventKind, fraction: f64, message: String) -> JobEvent {
        let stage_fraction = fraction.clamp(0.0, 1.0);
        let job_fraction = self.job_fraction(stage, stage_fraction);
        let eta_s = match kind {
            EventKind::Failed => None,
            _ => self.eta(job_fraction),
        };
        JobEvent {
            stage,
            kind,
            phase: None,
            step: None,
            metrics: None,
            stage_fraction,
            job_fraction,
            eta_s,
            message,
            preview: None,
        }
    }

    fn send(&mut self, event: JobEvent) {
        (self.sink)(&event);
    }
}

/// What a stage reports as it goes: its phase, how far into it, training's figures, and a note.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Update {
    pub phase: Phase,
    pub step: Option<Step>,
    pub metrics: Option<TrainMetrics>,
    /// Anything the stage adds in words (the photo being read, a pair count).
    pub note: String,
}

impl Update {
    pub fn new(phase: Phase) -> Self {
        Self { phase, step: None, metrics: None, note: String::new() }
    }

    /// `done` of `total` units of `phase`.
    pub fn step(phase: Phase, done: usize, total: usize) -> Self {
        Self { step: Some(Step { done: done as u64, total: total as u64 }), ..Self::new(phase) }
    }

    /// One line for people: `features 12/50`, `step 300/1500 · loss 0.0421 · PSNR 28.1 dB · 84000 splats · cpu`.
    fn message(&self) -> String {
        let mut line = self.phase.name().to_string();
        if let Some(Step { done, total }) = self.step {
            line.push_str(&format!(" {done}/{total}"));
        }
        if let Some(m) = &self.metrics {
            if let Some(loss) = m.loss {
                line.push_str(&format!(" · loss {loss:.4}"));
            }
            if let Some(psnr) = m.psnr {
                line.push_str(&format!(" · PSNR {psnr:.1} dB"));
            }
            line.push_str(&format!(" · {} splats · {}", m.splats, m.device));
        }
        if !self.note.is_empty() {
            line.push(' ');
            line.push_str(&self.note);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::Preset;

    #[test]
    fn job_fraction_runs_from_zero_to_one_over_the_stages_run() {
        let mut events = Vec::new();
        let settings = JobSettings { until: Stage::Train, ..JobSettings::for_preset(Preset::Preview) };
        let mut sink = |e: &JobEvent| events.push(e.clone());
        let mut reporter = Reporter::new(&settings, &mut sink);
        reporter.skipped(Stage::Check, String::new());
        reporter.started(Stage::Poses, String::new());
        reporter.progress(Stage::Poses, 0.5, Update::step(Phase::Features, 1, 2));
        reporter.finished(Stage::Poses, String::new(), None);
        reporter.started(Stage::Train, String::new());
        reporter.finished(Stage::Train, String::new(), None);
        let fractions: Vec<f64> = events.iter().map(|e| e.job_fraction).collect();
        assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
        let (check, poses, train) = (STAGE_WEIGHTS[0], STAGE_WEIGHTS[1], STAGE_WEIGHTS[2]);
        let total = check + poses + train;
        assert!((fractions[0] - check / total).abs() < 1e-12);
        assert!((fractions[2] - (check + poses / 2.0) / total).abs() < 1e-12);
        assert!((fractions.last().unwrap() - 1.0).abs() < 1e-12, "until=train ends at 1");
        assert_eq!(events[0].kind, EventKind::Skipped);
        assert!(events.iter().all(|e| e.eta_s.is_none()), "no ETA in the first seconds");
    }
}
