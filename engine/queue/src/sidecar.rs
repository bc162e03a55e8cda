//! `kiln.toml` in an input folder of a batch or a watched folder: that folder's job spec
//! ([`kiln_protocol::job_spec`] says what it holds and parses it), which overrides the settings
//! the batch or watcher was started with for that folder alone; a batch CSV row's cells override
//! it in turn ([`crate::layered_settings`]).

use std::path::Path;

use crate::QueueError;
use kiln_protocol::SettingsOverrides;
use kiln_protocol::job_spec::parse_job_spec;

/// The sidecar's file name inside an input folder: the job spec's.
pub use kiln_protocol::job_spec::JOB_SPEC_FILE as SIDECAR_FILE;

/// The overrides of `folder/kiln.toml`, or `None` when the folder has no such file.
pub fn read_sidecar(folder: &Path) -> Result<Option<SettingsOverrides>, QueueError> {
    let path = folder.join(SIDECAR_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(QueueError::io(&path))?;
    parse_job_spec(&text).map(Some).map_err(|problem| QueueError::BadInput { path, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::Stage;

    #[test]
    fn a_sidecar_file_is_found_in_the_folder_and_its_errors_name_it_last() {
        let dir = std::env::temp_dir().join(format!("kiln-sidecar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_sidecar(&dir).unwrap(), None);
        std::fs::write(dir.join(SIDECAR_FILE), "until = 'check'\nbad").unwrap();
        let error = read_sidecar(&dir).unwrap_err();
        assert!(error.is_bad_input());
        let text = error.to_string();
        assert!(
            text.contains("(line 2, column") && text.ends_with(&dir.join(SIDECAR_FILE).display().to_string()),
            "{text}"
        );
        std::fs::write(dir.join(SIDECAR_FILE), "until = 'check'").unwrap();
        assert_eq!(read_sidecar(&dir).unwrap().and_then(|o| o.until), Some(Stage::Check));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
