//! Third-party validators of a job's exported files: the programs named by `KILN_GLTF_VALIDATOR`
//! and `KILN_USDZ_VALIDATOR` (each takes the file's path and exits 0 when it passes; the Khronos
//! glTF-Validator and OpenUSD's ARKit checker in practice). Results go into `report.json`, and a
//! rejected file fails the job's delivery.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::JobError;
use crate::report::{JobReport, ValidatorResult, write_report};

/// The environment variable naming the glTF validator program.
pub const GLTF_VALIDATOR_VAR: &str = "KILN_GLTF_VALIDATOR";
/// The environment variable naming the USDZ validator program.
pub const USDZ_VALIDATOR_VAR: &str = "KILN_USDZ_VALIDATOR";

/// Lines of a validator's output kept in the report: the verdict and its last reasons.
const VALIDATOR_LINES_KEPT: usize = 5;

/// The validator programs to run, by the file type they check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub gltf: Option<PathBuf>,
    pub usdz: Option<PathBuf>,
}

impl Validators {
    /// The validators the environment names (none when the variables are unset).
    pub fn from_env() -> Self {
        let program = |name| std::env::var_os(name).map(PathBuf::from);
        Self { gltf: program(GLTF_VALIDATOR_VAR), usdz: program(USDZ_VALIDATOR_VAR) }
    }

    fn for_file(&self, file: &Path) -> Option<&Path> {
        match file.extension().and_then(|e| e.to_str()) {
            Some("glb") => self.gltf.as_deref(),
            Some("usdz") => self.usdz.as_deref(),
            _ => None,
        }
    }
}

/// Why the exported files are not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("cannot run the validator: {source}: {}", program.display())]
    Run { program: PathBuf, source: std::io::Error },
    #[error("the validator rejected {}; its output is in report.json", files.join(", "))]
    Rejected { files: Vec<String> },
    #[error(transparent)]
    Report(#[from] JobError),
}

/// Runs `validators` on the report's exported files, records the results in the job's
/// `report.json`, and fails when one rejects its file.
pub fn validate_outputs(report: &mut JobReport, validators: &Validators) -> Result<(), ValidationError> {
    let outputs: Vec<PathBuf> = report.outputs().iter().map(|o| o.path.clone()).collect();
    for path in outputs {
        if let Some(program) = validators.for_file(&path) {
            report.validators.push(run(program, &path)?);
        }
    }
    if report.validators.is_empty() {
        return Ok(());
    }
    write_report(report, &report.job_dir)?;
    let files: Vec<String> =
        report.validators.iter().filter(|v| !v.passed).map(|v| v.file.display().to_string()).collect();
    if files.is_empty() { Ok(()) } else { Err(ValidationError::Rejected { files }) }
}

fn run(program: &Path, file: &Path) -> Result<ValidatorResult, ValidationError> {
    let output = Command::new(program)
        .arg(file)
        .output()
        .map_err(|source| ValidationError::Run { program: program.to_path_buf(), source })?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let detail = lines[lines.len().saturating_sub(VALIDATOR_LINES_KEPT)..].join("\n");
    Ok(ValidatorResult {
        file: file.to_path_buf(),
        validator: program.display().to_string(),
        passed: output.status.success(),
        detail,
    })
}
