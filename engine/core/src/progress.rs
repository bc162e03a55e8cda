//! Progress out of parallel work: [`with_progress`] runs the work on a scoped thread and hands the
//! `(done, total)` counts it reports, from any thread, to a callback on the calling thread, so
//! callbacks need not be `Send` or `Sync`.

use std::sync::mpsc;

/// The worker thread of [`with_progress`] panicked; `message` is the panic's text when it had one.
#[derive(Debug, thiserror::Error)]
#[error("a worker thread panicked: {message}")]
pub struct WorkerPanicked {
    pub message: String,
}

/// Runs `work` on a scoped thread and returns what it returns. Each `(done, total)` that `work`
/// passes to its reporter, from whichever thread, reaches `on_progress` on this thread, in order,
/// while `work` runs.
pub fn with_progress<T: Send>(
    mut on_progress: impl FnMut(usize, usize),
    work: impl FnOnce(&(dyn Fn(usize, usize) + Sync)) -> T + Send,
) -> Result<T, WorkerPanicked> {
    let (sender, receiver) = mpsc::channel::<(usize, usize)>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            // Progress is advisory: a send fails only once the receiver is gone.
            let report = move |done: usize, total: usize| {
                let _ = sender.send((done, total));
            };
            work(&report)
        });
        // The loop ends when the worker drops its sender, i.e. when `work` returns or unwinds.
        for (done, total) in receiver {
            on_progress(done, total);
        }
        worker.join()
    })
    .map_err(|payload| WorkerPanicked { message: panic_text(payload.as_ref()) })
}

/// The text of a panic payload (`panic!` with a literal gives `&str`, with arguments `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_from_worker_threads_reach_the_caller_in_order() {
        let mut seen = Vec::new();
        let result = with_progress(
            |done, total| seen.push((done, total)),
            |report| {
                std::thread::scope(|scope| {
                    scope.spawn(|| (1..=3).for_each(|done| report(done, 3)));
                });
                "finished"
            },
        );
        assert_eq!(result.ok(), Some("finished"));
        assert_eq!(seen, [(1, 3), (2, 3), (3, 3)]);
    }

    #[test]
    fn a_panicking_worker_is_an_error_with_its_message() {
        let result = with_progress(
            |_, _| {},
            |report| -> u32 {
                report(1, 2);
                panic!("worker failed at {}", 1);
            },
        );
        let Err(error) = result else { panic!("a panic must be an error") };
        assert_eq!(error.message, "worker failed at 1");
        assert_eq!(error.to_string(), "a worker thread panicked: worker failed at 1");
    }
}
