//! Terminal progress for long stages: one bar with the stage name, position, live figures and ETA.
//! Drawn on stderr, so `--json` output on stdout stays machine-readable.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar for one stage of `total` units.
pub struct StageBar {
    bar: ProgressBar,
}

impl StageBar {
    pub fn new(stage: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        // The template is a compile-time constant; a bad one would only lose the styling.
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} · {elapsed} elapsed, ETA {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    pub fn update(&self, position: u64, message: String) {
        self.bar.set_position(position);
        self.bar.set_message(message);
    }

    pub fn finish(&self, message: String) {
        self.bar.finish_with_message(message);
    }
}
