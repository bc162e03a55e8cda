// Shared by the viewer's raster pipelines: the per-frame view block (mirrors
// `render::ViewUniforms`).

struct View {
    clip_from_world: mat4x4<f32>,
    camera_from_world: mat4x4<f32>,
    camera_center: vec4<f32>,
    // (width, height, 1/width, 1/height)
    viewport: vec4<f32>,
    // World up for hemisphere lighting (w unused).
    up: vec4<f32>,
}

@group(0) @binding(0) var<uniform> view: View;
