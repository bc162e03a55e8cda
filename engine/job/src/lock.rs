//! One process per job folder: an exclusive advisory lock on `<job>/job.lock`, held for the whole
//! run. A second `kiln reconstruct` (or a watcher and a user) on the same folder would otherwise
//! interleave stage records and checkpoints. The operating system drops the lock when its holder
//! exits, however it exits (`kill -9` included), so a crashed run never blocks the next one.

use crate::layout::JobLayout;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::JobError;

/// The held lock; dropping it releases the folder.
#[derive(Debug)]
pub(crate) struct JobLock {
    _file: File,
}

impl JobLock {
    /// Locks `job_dir` (which must exist), or says which process holds it.
    pub(crate) fn acquire(job_dir: &Path) -> Result<Self, JobError> {
        let path = JobLayout::new(job_dir).lock();
        let io = |source| JobError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                write!(file, "{}", std::process::id()).map_err(io)?;
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The id is only for the message: an unreadable one leaves it out.
                let _ = file.read_to_string(&mut holder);
                Err(JobError::Busy { job_dir: job_dir.to_path_buf(), holder: holder_pid(&holder) })
            }
            Err(TryLockError::Error(source)) => Err(JobError::Io { path: PathBuf::from(&path), source }),
        }
    }
}

fn holder_pid(content: &str) -> Option<u32> {
    content.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("kiln-job-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = JobLock::acquire(&dir).unwrap();
        match JobLock::acquire(&dir) {
            Err(JobError::Busy { job_dir, holder }) => {
                assert_eq!(job_dir, dir);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        let again = JobLock::acquire(&dir);
        assert!(again.is_ok(), "released on drop: {again:?}");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
