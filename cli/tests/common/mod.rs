//! What the CLI tests share: the `kiln` binary as a user runs it, and the shared datasets.
#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `kiln` binary under test, logging warnings only.
pub fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env("KILN_LOG", "warn");
    command
}

/// `$KILN_DATASETS/bunny-synth/images` (default `../shared/datasets` beside the workspace), or
/// `None` after saying loudly that the test is skipped.
pub fn synth_images() -> Option<PathBuf> {
    kiln_testkit::dataset("bunny-synth/images")
}

/// `signal` (`INT` or `TERM`) to `child` with the system's `kill`.
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// The stage `report.json` says is running, once it says one is.
pub fn running_stage(out: &Path) -> Option<String> {
    let text = std::fs::read_to_string(out.join("report.json")).ok()?;
    let report: serde_json::Value = serde_json::from_str(&text).ok()?;
    let stages = report["stages"].as_array()?;
    stages.iter().find(|s| s["status"] == "running").and_then(|s| s["stage"].as_str()).map(str::to_string)
}
