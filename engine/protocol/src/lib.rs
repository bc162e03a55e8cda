//! What every Kiln front end exchanges with the engine, and the hosted service with its clients:
//! plain data with serde and nothing else, so the cloud client and the app's UI bridge need
//! neither wgpu nor the pipeline to speak it.
//!
//! - [`preset`]: the named quality levels and every number they set;
//! - [`settings`]: a job's settings ([`JobSettings`]), the one all-optional overrides type that
//!   command-line flags, `kiln.toml`, CSV columns, JSON and the app all deserialize
//!   ([`SettingsOverrides`]), stages, devices and export formats;
//! - [`event`]: typed progress events ([`JobEvent`]);
//! - [`report`]: `report.json` and the verdict on the model; [`check`]: the capture check's report;
//! - [`error`]: the class of an error ([`ErrorClass`]), which a CLI maps to exit codes and a server
//!   to HTTP statuses;
//! - `job_spec` (the `toml` feature): `kiln.toml`, a job's settings in a file;
//! - [`app`]: the desktop app's IPC types (drafts, queue rows, preview views, exports).
//!
//! With the `ts` feature every type the app exchanges also derives `ts_rs::TS`; the
//! `ts_bindings` test keeps the UI's TypeScript copies (`ui/src/bindings/`) equal to them.

#[macro_use]
mod named;

pub mod app;
pub mod check;
pub mod csv_cell;
pub mod error;
pub mod event;
#[cfg(feature = "toml")]
pub mod job_spec;
pub mod layout;
pub mod preset;
pub mod report;
pub mod settings;

pub use error::ErrorClass;
pub use event::{EventKind, JobEvent, Phase, Step, TrainMetrics};
pub use preset::{PRESETS, Preset};
pub use report::{JobReport, MatFigures, ModelVerdict, ScaleSource, Subject};
pub use settings::{DEFAULT_FORMATS, Device, Format, JobSettings, Resolved, SettingsOverrides, Stage};
