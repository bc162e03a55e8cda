//! Exported files: GLB, USDZ, OBJ + MTL + PNG, and the frame change from the input's world to
//! the exported metres-and-+Y-up frame (`export_from_world`).

mod error;
pub mod frame;
pub mod glb;
pub mod obj;
mod png;
mod prepare;
pub mod usdz;

pub use error::ExportError;
