//! Ctrl-C (SIGINT) and SIGTERM as a [`CancelFlag`]: the signal handler only sets an atomic flag
//! (the one thing a handler may safely do); a small thread turns that into `CancelFlag::cancel`,
//! which the running job polls between steps, so it stops with its folder resumable and the
//! queue consistent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln_engine::job::CancelFlag;

/// Set by the signal handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How often the relay thread looks at the flag: well under a human's notice.
const RELAY_POLL: Duration = Duration::from_millis(100);

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// A flag that becomes cancelled on the first Ctrl-C or SIGTERM. A second Ctrl-C ends the
/// process at once (the default action is restored after the first).
pub fn cancel_on_ctrl_c() -> CancelFlag {
    let flag = CancelFlag::default();
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let relay = flag.clone();
    std::thread::spawn(move || {
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(RELAY_POLL);
        }
        eprintln!("stopping: finishing the current step (Ctrl-C again to quit at once)");
        relay.cancel();
        // SAFETY: restoring the default disposition is always allowed.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    });
    flag
}
