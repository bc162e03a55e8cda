//! Ctrl-C (and SIGTERM/SIGHUP on Unix, a console close on Windows) as a [`CancelFlag`], the one
//! way every long-running command stops: the first signal cancels the flag, which the running
//! job polls between units of work, so it stops with its folder resumable and the queue
//! consistent; a second Ctrl-C ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

use kiln_job::{CancelFlag, JobError};

/// The exit status of work stopped by Ctrl-C or a termination signal: 128 + SIGINT, as shells
/// report a process ended by Ctrl-C, so scripts tell "interrupted, resumable" from "failed".
pub const EXIT_INTERRUPTED: u8 = 130;

/// A flag that becomes cancelled on the first Ctrl-C or termination signal. When the handler
/// cannot be installed (another one already is), the flag never fires and a warning says so.
pub fn cancel_on_ctrl_c() -> CancelFlag {
    let flag = CancelFlag::default();
    let relay = flag.clone();
    let pressed = AtomicBool::new(false);
    let installed = ctrlc::set_handler(move || {
        if pressed.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("\nstopping after the current step (Ctrl-C again quits at once); the same command resumes");
        relay.cancel();
    });
    if let Err(error) = installed {
        tracing::warn!("Ctrl-C will not stop the work cleanly: {error}");
    }
    flag
}

/// Work that stopped on [`cancel_on_ctrl_c`]'s flag, beyond a single job (a batch); the message
/// says where it stopped and how to resume.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Whether `error` is work stopped by [`cancel_on_ctrl_c`]'s flag.
pub fn was_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<Interrupted>() || matches!(cause.downcast_ref::<JobError>(), Some(JobError::Cancelled(_)))
    })
}
