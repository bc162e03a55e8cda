//! The texturing stage's error type, shared by the atlas and the baker.

/// Errors building a UV atlas or baking a texture. Each says what input was at fault.
#[derive(Debug, thiserror::Error)]
pub enum TextureError {
    #[error("the mesh has no triangles to texture")]
    EmptyMesh,
    #[error("texture size {0} is outside the supported {min}..={max} texels", min = super::MIN_TEXTURE_SIZE, max = super::MAX_TEXTURE_SIZE)]
    TextureSize(u32),
    #[error("the mesh has {uvs} UVs for {vertices} vertices (build the atlas first)")]
    MissingUvs { uvs: usize, vertices: usize },
    #[error("triangle {triangle} refers to vertex {vertex}, but the mesh has {vertices} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertices: usize },
    #[error("no views to bake from")]
    NoViews,
    #[error("view {view}: {problem}")]
    BadView { view: usize, problem: String },
    #[error("{charts} charts do not fit in a {size}² atlas even at the smallest texel density")]
    AtlasFull { charts: usize, size: u32 },
    /// The caller's `should_stop` asked the bake to stop.
    #[error("stopped on request")]
    Cancelled,
}
