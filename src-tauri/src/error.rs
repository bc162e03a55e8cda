//! Every command's error is the protocol's [`AppError`]: a class the UI acts on and a message
//! for people. Conversions from the engine's errors keep their class.

use std::sync::{Mutex, MutexGuard};

use kiln_protocol::ErrorClass;
pub use kiln_protocol::app::AppError;

/// What every command returns: its value, or the error the UI shows.
pub type CommandResult<T> = Result<T, AppError>;

/// An [`AppError`] from any error: the class of the first engine error in its chain of causes
/// (`Internal` when none has one), and its message with every cause.
pub fn app_error(error: &(dyn std::error::Error + 'static)) -> AppError {
    let mut class = None;
    let mut message = error.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        class = class.or_else(|| kiln_job::classify(current));
        if let Some(queue) = current.downcast_ref::<kiln_queue::QueueError>() {
            class = class.or(Some(queue.class()));
        }
        if !std::ptr::eq(current, error) {
            let text = current.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
        }
        cause = current.source();
    }
    AppError::new(class.unwrap_or(ErrorClass::Internal), message)
}

/// A bad-input error in the UI's words.
pub fn bad_input(message: impl Into<String>) -> AppError {
    AppError::new(ErrorClass::BadInput, message)
}

/// Kiln's own failure (a lost thread, a poisoned lock).
pub fn internal(message: impl Into<String>) -> AppError {
    AppError::new(ErrorClass::Internal, message)
}

/// Locks a mutex; a poisoned one (a panicked holder) is Kiln's failure, reported, not a crash.
pub fn lock<T>(mutex: &Mutex<T>) -> CommandResult<MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| internal("an earlier failure left the app's state locked; restart the app"))
}
