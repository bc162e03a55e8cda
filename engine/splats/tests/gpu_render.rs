//! The wgpu renderer against the CPU reference (`kiln_splats::render`): prefix sum and radix sort
//! against plain CPU equivalents, forward images/state and every gradient against the reference
//! on the shared edge-case scenes (`render::testing`) and a random scene at a size that is not a
//! multiple of the tile size. Runs on any adapter, software ones included (CI: Mesa lavapipe).
#![cfg(feature = "gpu")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kiln_core::image_buf::ImageRgb;
use kiln_core::rng::Pcg32;
use kiln_core::splats::{SplatGrads, SplatsError};
use kiln_splats::gpu::sort::{RadixSorter, SortedKeys, bits_for};
use kiln_splats::gpu::{DevicePreference, GpuContext, GpuError, GpuRenderer, GpuSplats, OptionalFeatures};
use kiln_splats::render::{self, ProjectedGrad, ProjectedSplat, testing};

/// A device on any adapter with every optional feature it has.
fn context() -> Option<GpuContext> {
    context_with(OptionalFeatures::ALL)
}

/// A device on any adapter, or `None` (printed loudly) when the machine has no adapter at all.
fn context_with(features: OptionalFeatures) -> Option<GpuContext> {
    match GpuContext::with_options(DevicePreference::AllowSoftware, features) {
        Ok(ctx) => {
            println!("adapter: {} (float atomics: {}, subgroups: {})", ctx.name(), ctx.float_atomics, ctx.subgroups);
            Some(ctx)
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            assert!(
                std::env::var_os("KILN_REQUIRE_GPU").is_none(),
                "KILN_REQUIRE_GPU is set and there is no adapter: {e}"
            );
            println!("SKIPPED: no wgpu adapter");
            None
        }
        Err(e) => panic!("GPU setup failed: {e}"),
    }
}

/// Largest absolute difference between two equally long slices.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Asserts `gpu ≈ cpu` with error at most `rel · max|cpu| + abs` over the whole array.
fn assert_close(what: &str, scene: &str, gpu: &[f32], cpu: &[f32], rel: f32, abs: f32) {
    let diff = max_abs_diff(gpu, cpu);
    let scale = max_abs(cpu);
    let bound = rel * scale + abs;
    println!("{scene:>18} {what:<22} max|diff| {diff:.3e}  max|cpu| {scale:.3e}");
    assert!(diff <= bound, "{scene}: {what}: max |gpu − cpu| = {diff:e} > {bound:e} (max |cpu| = {scale:e})");
    assert!(gpu.iter().all(|v| v.is_finite()), "{scene}: {what}: non-finite GPU value");
}

fn flat<const N: usize>(v: &[[f32; N]]) -> Vec<f32> {
    v.iter().flatten().copied().collect()
}

#[test]
fn prefix_sum_matches_cpu() {
    let Some(ctx) = context() else { return };
    check_prefix_sum(&ctx);
}

fn check_prefix_sum(ctx: &GpuContext) {
    let ctx = ctx.clone();
    let sorter = RadixSorter::new(&ctx).unwrap();
    let mut rng = Pcg32::new(7);
    // One block, a partial second block, and three scan levels (> 1024² elements).
    for n in [1usize, 1000, 1025, 70_000, 1_100_000] {
        let data: Vec<u32> = (0..n).map(|_| rng.next_u32() % 50).collect();
        let buffer = ctx.upload("scan input", &data);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        sorter.scanner().encode(&ctx, &mut encoder, &buffer, n as u32);
        ctx.queue.submit([encoder.finish()]);
        let gpu: Vec<u32> = ctx.read(&buffer, n).unwrap();
        let mut cpu = Vec::with_capacity(n);
        let mut total = 0u32;
        for &v in &data {
            cpu.push(total);
            total += v;
        }
        assert!(gpu == cpu, "exclusive scan of {n} elements differs from the CPU");
    }
}

#[test]
fn radix_sort_matches_cpu_stable_sort() {
    let Some(ctx) = context() else { return };
    check_radix_sort(&ctx);
}

fn check_radix_sort(ctx: &GpuContext) {
    let ctx = ctx.clone();
    let sorter = RadixSorter::new(&ctx).unwrap();
    let mut rng = Pcg32::new(11);
    for (n, num_tiles) in [(1usize, 1u32), (4097, 1), (10_000, 130), (100_000, 70_000)] {
        // Few distinct depths, so that stability (ties by input order) is really exercised.
        let hi: Vec<u32> = (0..n).map(|_| rng.next_u32() % num_tiles).collect();
        let lo: Vec<u32> = (0..n).map(|_| (1.0f32 + (rng.next_u32() % 300) as f32 * 0.25).to_bits()).collect();
        let values: Vec<u32> = (0..n as u32).collect();
        let input = SortedKeys {
            keys_hi: ctx.upload("hi", &hi),
            keys_lo: ctx.upload("lo", &lo),
            values: ctx.upload("values", &values),
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let sorted = sorter.encode(&ctx, &mut encoder, input, n as u32, u32::BITS, bits_for(num_tiles));
        ctx.queue.submit([encoder.finish()]);
        let gpu_values: Vec<u32> = ctx.read(&sorted.values, n).unwrap();
        let gpu_hi: Vec<u32> = ctx.read(&sorted.keys_hi, n).unwrap();
        let gpu_lo: Vec<u32> = ctx.read(&sorted.keys_lo, n).unwrap();
        let mut cpu = values.clone();
        cpu.sort_by_key(|&i| (hi[i as usize], lo[i as usize])); // stable
        assert!(gpu_values == cpu, "radix sort of {n} keys ({num_tiles} tiles) differs from a stable CPU sort");
        let cpu_hi: Vec<u32> = cpu.iter().map(|&i| hi[i as usize]).collect();
        let cpu_lo: Vec<u32> = cpu.iter().map(|&i| lo[i as usize]).collect();
        assert!(gpu_hi == cpu_hi && gpu_lo == cpu_lo, "sorted keys were not carried with their values");
    }
}

/// Scenes of the comparison: every shared edge case, a random scene of a few thousand splats at
/// 203×151 (not a multiple of 16), and 2000 small opaque splats in one tile (eight batches of
/// 256, every pixel saturated long before the last: the early exit between batches).
fn scenes() -> Vec<testing::Scene> {
    let mut scenes = testing::edge_cases();
    scenes.push(testing::random(3, 3000, 203, 151));
    scenes.push(testing::opaque_tile(9, 2000));
    scenes
}

/// Splats per batch of the compositing kernels (one per thread of a 16×16 workgroup).
const BATCH: usize = 256;

fn projected_fields(p: &[ProjectedSplat], visible: &[bool]) -> [Vec<f32>; 5] {
    let pick = |f: &dyn Fn(&ProjectedSplat) -> Vec<f32>| -> Vec<f32> {
        p.iter().zip(visible).filter(|(_, v)| **v).flat_map(|(s, _)| f(s)).collect()
    };
    [
        pick(&|s| s.mean2d.to_vec()),
        pick(&|s| s.conic.to_vec()),
        pick(&|s| vec![s.depth]),
        pick(&|s| s.color.to_vec()),
        pick(&|s| vec![s.opacity]),
    ]
}

/// GPU projection against `render::project`: radii equal except for rare off-by-one `ceil`s of
/// values within rounding of an integer, every other field within float rounding.
fn check_projection(name: &str, gpu: &[ProjectedSplat], cpu: &[ProjectedSplat]) {
    assert_eq!(gpu.len(), cpu.len());
    let mut radius_mismatches = 0;
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        if g.radius != c.radius {
            radius_mismatches += 1;
            assert!(
                g.radius.abs_diff(c.radius) <= 1 && g.radius > 0 && c.radius > 0,
                "{name}: splat {i}: radius {} vs {}",
                g.radius,
                c.radius
            );
        }
    }
    println!("{name:>18} radius mismatches: {radius_mismatches} of {}", gpu.len());
    assert!(radius_mismatches * 200 <= gpu.len(), "{name}: {radius_mismatches} radii differ");
    let visible: Vec<bool> = gpu.iter().zip(cpu).map(|(g, c)| g.radius > 0 && c.radius > 0).collect();
    let names = ["mean2d", "conic", "depth", "color", "opacity"];
    for ((what, g), c) in names.iter().zip(projected_fields(gpu, &visible)).zip(projected_fields(cpu, &visible)) {
        assert_close(what, name, &g, &c, 1e-5, 1e-6);
    }
}

#[test]
fn forward_matches_cpu_reference() {
    let Some(ctx) = context() else { return };
    check_forward(&ctx, scenes());
}

fn check_forward(ctx: &GpuContext, scenes: Vec<testing::Scene>) {
    let ctx = ctx.clone();
    let renderer = GpuRenderer::new(&ctx).unwrap();
    for scene in scenes {
        let name = scene.name;
        let (w, h) = (scene.camera.width(), scene.camera.height());
        let splats = GpuSplats::upload(&ctx, &scene.splats).unwrap();
        let frame = renderer.forward(&splats, &scene.camera, scene.background).unwrap();

        // Projection.
        let projected = frame.read_projected(&ctx).unwrap();
        check_projection(name, &projected, &render::project(&scene.splats, &scene.camera));

        // Binning, sort and compositing, against the reference compositor fed the GPU's projection
        // (so that a rare radius rounding difference cannot change the tile lists).
        let (cpu_out, cpu_state) = render::rasterize(&projected, w, h, scene.background);
        let state = frame.read_state(&ctx).unwrap();
        // Empty tiles may place their empty range anywhere; every tile's list must match exactly.
        assert_eq!(state.tile_ranges.len(), cpu_state.tile_ranges.len());
        assert_eq!(state.sorted_ids.len(), cpu_state.sorted_ids.len(), "{name}: intersection counts differ");
        for (tile, (g, c)) in state.tile_ranges.iter().zip(&cpu_state.tile_ranges).enumerate() {
            let gpu_ids = &state.sorted_ids[g[0] as usize..g[1] as usize];
            let cpu_ids = &cpu_state.sorted_ids[c[0] as usize..c[1] as usize];
            assert_eq!(gpu_ids, cpu_ids, "{name}: tile {tile}: depth-sorted splat lists differ");
        }
        let longest_tile = state.tile_ranges.iter().map(|r| r[1] - r[0]).max().unwrap_or(0) as usize;
        let deepest_pixel = state.last_contributor.iter().copied().max().unwrap_or(0) as usize;
        println!("{name:>18} longest tile list {longest_tile}, deepest last contributor {deepest_pixel}");
        if matches!(name, "random" | "opaque_tile") {
            assert!(longest_tile > 2 * BATCH, "{name}: the scene no longer spans several batches");
        }
        if name == "opaque_tile" {
            assert!(deepest_pixel < longest_tile - BATCH, "{name}: no batch is left after every pixel saturates");
        }
        let mismatched = state.last_contributor.iter().zip(&cpu_state.last_contributor).filter(|(a, b)| a != b).count();
        println!("{name:>18} last_contributor mismatches: {mismatched} of {}", state.last_contributor.len());
        assert!(
            mismatched * 1000 <= state.last_contributor.len(),
            "{name}: {mismatched} pixels stop at a different splat"
        );

        let out = frame.read_output(&ctx).unwrap();
        assert_close("image", name, &flat(&out.image.pixels), &flat(&cpu_out.image.pixels), 0.0, 2e-5);
        assert_close("alpha", name, &out.alpha.pixels, &cpu_out.alpha.pixels, 0.0, 2e-5);
        assert_close("depth", name, &out.depth.pixels, &cpu_out.depth.pixels, 1e-5, 0.0);
        assert_close("median_depth", name, &out.median_depth.pixels, &cpu_out.median_depth.pixels, 1e-5, 0.0);
        assert_close(
            "final_transmittance",
            name,
            &state.final_transmittance,
            &cpu_state.final_transmittance,
            0.0,
            2e-5,
        );

        // End to end against `render::render`.
        let reference = render::render(&scene.splats, &scene.camera, scene.background);
        let diff = max_abs_diff(&flat(&out.image.pixels), &flat(&reference.output.image.pixels));
        println!("{name:>18} end-to-end image max|diff| {diff:.3e}");
        assert!(diff <= 1e-3, "{name}: end-to-end image differs by {diff}");
    }
}

/// A deterministic, signed `∂L/∂image`.
fn random_grad_image(width: u32, height: u32, seed: u64) -> ImageRgb {
    let mut rng = Pcg32::new(seed);
    let mut img = ImageRgb::new(width, height, [0.0; 3]);
    for p in &mut img.pixels {
        *p = [0; 3].map(|_| rng.uniform() * 2.0 - 1.0);
    }
    img
}

fn projected_grad_fields(g: &[ProjectedGrad]) -> [Vec<f32>; 4] {
    [
        g.iter().flat_map(|v| v.mean2d).collect(),
        g.iter().flat_map(|v| v.conic).collect(),
        g.iter().flat_map(|v| v.color).collect(),
        g.iter().map(|v| v.opacity).collect(),
    ]
}

fn param_grad_fields(g: &SplatGrads) -> [Vec<f32>; 5] {
    [
        flat(&g.means),
        flat(&g.log_scales),
        flat(&g.rotations),
        g.opacity_logits.clone(),
        g.sh.iter().flatten().flatten().copied().collect(),
    ]
}

fn check_backward(ctx: &GpuContext, scenes: Vec<testing::Scene>) {
    let renderer = GpuRenderer::new(ctx).unwrap();
    for scene in scenes {
        let name = scene.name;
        let (w, h) = (scene.camera.width(), scene.camera.height());
        let grad_image = random_grad_image(w, h, 5);
        let splats = GpuSplats::upload(ctx, &scene.splats).unwrap();
        let frame = renderer.forward(&splats, &scene.camera, scene.background).unwrap();
        let grad_buffer = ctx.upload("grad image", &grad_image.pixels);
        let grads = renderer.backward(&splats, &frame, &grad_buffer).unwrap();
        let projected = frame.read_projected(ctx).unwrap();
        let gpu_projected_grads = grads.read_projected(ctx).unwrap();

        // Compositing backward, against the reference fed the GPU's projection.
        let (_, cpu_state) = render::rasterize(&projected, w, h, scene.background);
        let cpu_projected_grads =
            render::rasterize_backward(&projected, &cpu_state, w, h, scene.background, &grad_image);
        let names = ["d mean2d", "d conic", "d color", "d opacity"];
        let gpu_p = projected_grad_fields(&gpu_projected_grads);
        for ((what, g), c) in names.iter().zip(&gpu_p).zip(projected_grad_fields(&cpu_projected_grads)) {
            assert_close(what, name, g, &c, 1e-4, 1e-6);
        }

        // Projection backward, against the reference fed the GPU's projected gradients.
        let cpu_grads = render::project_backward(&scene.splats, &scene.camera, &projected, &gpu_projected_grads);
        let names = ["d means", "d log_scales", "d rotations", "d opacity_logits", "d sh"];
        let gpu_g = param_grad_fields(&grads.read(ctx).unwrap());
        for ((what, g), c) in names.iter().zip(&gpu_g).zip(param_grad_fields(&cpu_grads)) {
            assert_close(what, name, g, &c, 1e-4, 1e-6);
        }

        // End to end against `render::render_backward`.
        let reference = render::render(&scene.splats, &scene.camera, scene.background);
        let (ref_grads, _) =
            render::render_backward(&scene.splats, &scene.camera, &reference, scene.background, &grad_image);
        for ((what, g), c) in names.iter().zip(&gpu_g).zip(param_grad_fields(&ref_grads)) {
            assert_close(&format!("{what} (end to end)"), name, g, &c, 1e-3, 1e-6);
        }

        // Densification observations: NDC gradient norm and radius fraction of the same frame.
        let densify = grads.read_densify(ctx).unwrap();
        for (i, (obs, p)) in densify.iter().zip(&projected).enumerate() {
            let g = gpu_projected_grads[i].mean2d;
            let expected = if p.radius > 0 { (g[0] * w as f32 * 0.5).hypot(g[1] * h as f32 * 0.5) } else { 0.0 };
            assert!(
                (obs[0] - expected).abs() <= 1e-5 * expected.max(1e-3),
                "{name}: splat {i} grad2d norm {} vs {expected}",
                obs[0]
            );
            assert_eq!(obs[1], p.radius as f32 / w.max(h) as f32, "{name}: splat {i} radius fraction");
        }
    }
}

#[test]
fn backward_matches_cpu_reference() {
    let Some(ctx) = context() else { return };
    check_backward(&ctx, scenes());
}

#[test]
fn backward_without_optional_features_matches_cpu_reference() {
    let Some(ctx) = context_with(OptionalFeatures { float_atomics: false, subgroups: false }) else { return };
    check_backward(&ctx, scenes());
}

#[test]
fn backward_with_native_float_atomics_without_subgroups_matches_cpu_reference() {
    let Some(ctx) = context_with(OptionalFeatures { float_atomics: true, subgroups: false }) else { return };
    check_backward(&ctx, scenes());
}

#[test]
fn backward_with_subgroups_and_emulated_float_atomics_matches_cpu_reference() {
    let Some(ctx) = context_with(OptionalFeatures { float_atomics: false, subgroups: true }) else { return };
    check_backward(&ctx, scenes());
}

/// Every kernel with its 1D dispatches split over 2D grids (as happens past 65 535 workgroups on
/// large scenes), including grids with excess cells, still matches the reference.
#[test]
fn split_dispatch_grids_match_cpu_reference() {
    let Some(mut ctx) = context() else { return };
    ctx.max_workgroups_per_dimension = 3;
    check_prefix_sum(&ctx);
    check_radix_sort(&ctx);
    check_forward(&ctx, vec![testing::tile_straddle(), testing::random(3, 3000, 203, 151)]);
    check_backward(&ctx, vec![testing::tile_straddle(), testing::random(3, 3000, 203, 151)]);
}

/// Inconsistent inputs are errors, not panics or silent garbage.
#[test]
fn bad_inputs_are_errors() {
    let Some(ctx) = context() else { return };
    let mut scene = testing::tile_straddle();
    scene.splats.opacity_logits.pop();
    let err = GpuSplats::upload(&ctx, &scene.splats).unwrap_err();
    assert!(matches!(err, GpuError::InvalidSplats(SplatsError::FieldLength { field: "opacity_logits", .. })), "{err}");

    let scene = testing::tile_straddle();
    let renderer = GpuRenderer::new(&ctx).unwrap();
    let splats = GpuSplats::upload(&ctx, &scene.splats).unwrap();
    let frame = renderer.forward(&splats, &scene.camera, scene.background).unwrap();
    let short = ctx.upload("short grad image", &vec![[0.0f32; 3]; frame.num_pixels() - 1]);
    let err = renderer.backward(&splats, &frame, &short).unwrap_err();
    assert!(matches!(err, GpuError::BufferSize { name: "grad_image", .. }), "{err}");
}

/// An intersection capacity far below a frame's total: `forward_resident` keeps exactly the
/// capacity's worth of entries (the nearest, in depth order) and records the overflow, which the
/// next sync reports and grows past; `forward` detects it itself and re-renders the exact frame.
#[test]
fn undersized_intersection_capacity_is_detected_and_recovered() {
    let Some(ctx) = context() else { return };
    let scene = testing::random(3, 3000, 203, 151);
    let splats = GpuSplats::upload(&ctx, &scene.splats).unwrap();
    let reference = GpuRenderer::new(&ctx).unwrap();
    let exact = reference.forward(&splats, &scene.camera, scene.background).unwrap();
    let exact_state = exact.read_state(&ctx).unwrap();
    let exact_image = exact.read_output(&ctx).unwrap().image.pixels;
    let total = exact_state.sorted_ids.len() as u32;
    assert!(total > 1000, "the scene must have many intersections ({total})");

    let renderer = GpuRenderer::new(&ctx).unwrap();
    let small = total / 4;
    renderer.set_intersection_capacity(small);
    let truncated = renderer.forward_resident(&splats, &scene.camera, scene.background).unwrap();
    assert_eq!(truncated.intersection_capacity, small);
    assert_eq!(truncated.read_num_intersections(&ctx).unwrap(), total, "the true total is still counted");
    let kept = truncated.read_state(&ctx).unwrap();
    assert_eq!(kept.sorted_ids.len() as u32, small);
    // Every kept tile list is a prefix (the nearest splats) of the exact one.
    for (tile, (k, e)) in kept.tile_ranges.iter().zip(&exact_state.tile_ranges).enumerate() {
        let kept_ids = &kept.sorted_ids[k[0] as usize..k[1] as usize];
        let exact_ids = &exact_state.sorted_ids[e[0] as usize..e[1] as usize];
        assert!(exact_ids.starts_with(kept_ids), "tile {tile}: kept list is not a prefix of the exact one");
    }
    assert_eq!(renderer.sync_intersections().unwrap(), 1, "one overflowed frame");
    assert!(renderer.intersection_capacity() >= total, "capacity grown past the total");
    assert_eq!(renderer.sync_intersections().unwrap(), 0, "the overflow count is cleared");

    // `forward` re-renders an overflowing frame: the result is exact.
    renderer.set_intersection_capacity(small);
    let frame = renderer.forward(&splats, &scene.camera, scene.background).unwrap();
    assert!(frame.intersection_capacity >= total);
    let state = frame.read_state(&ctx).unwrap();
    assert_eq!(state.sorted_ids, exact_state.sorted_ids);
    assert_eq!(state.tile_ranges, exact_state.tile_ranges);
    let diff = max_abs_diff(&flat(&frame.read_output(&ctx).unwrap().image.pixels), &flat(&exact_image));
    assert!(diff <= 1e-6, "re-rendered image differs by {diff}");
}
