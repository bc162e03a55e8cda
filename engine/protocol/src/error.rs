//! The class of an error: the one fact about a failure every front end acts on. The CLI maps it
//! to an exit code, the server to an HTTP status, the app to how it shows the failure.

use std::fmt;

/// Whose problem an error is, and so what the caller does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The input cannot give a model (unreadable photos, too few, no overlap, a bad setting): the
    /// user changes the input; retrying as is fails again.
    BadInput,
    /// Another process holds the job: retry later.
    Busy,
    /// Stopped on request; the job folder is resumable.
    Cancelled,
    /// The compute device failed or is missing (no adapter, out of device memory, device lost):
    /// another device or machine may succeed.
    Device,
    /// Kiln's fault or the machine's (a bug, a full disk, an I/O error on the job folder).
    Internal,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::BadInput => "bad_input",
            ErrorClass::Busy => "busy",
            ErrorClass::Cancelled => "cancelled",
            ErrorClass::Device => "device",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
