//! (being written)
#[derive(Debug, thiserror::Error)]
pub enum ZipInputError {
    #[error("{0}")]
    Placeholder(String),
}
