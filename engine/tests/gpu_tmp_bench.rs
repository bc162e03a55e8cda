//! Temporary timing probe (deleted after use).
#![cfg(feature = "gpu")]
use kiln_engine::gpu::{DevicePreference, GpuContext, GpuRenderer, GpuSplats};
use kiln_engine::render::{self, testing};
use std::time::Instant;

#[test]
#[ignore]
fn tmp_bench() {
    let ctx = GpuContext::new(DevicePreference::AllowSoftware).unwrap();
    let renderer = GpuRenderer::new(&ctx).unwrap();
    let camera = testing::default_camera(800, 600);
    let spec = testing::RandomSpec { count: 200_000, max_opacity: 0.9, sigma_px: [0.5, 4.0], sh_degree: 3 };
    let splats = testing::random_splats(1, &camera, &spec);
    let gs = GpuSplats::upload(&ctx, &splats).unwrap();
    let grad = ctx.upload("g", &vec![[0.01f32; 3]; 800 * 600]);
    for _ in 0..1 {
        let t = Instant::now();
        let frame = renderer.forward(&gs, &camera, [0.0; 3]).unwrap();
        let _ = ctx.read::<f32>(&frame.alpha, 1).unwrap();
        let tf = t.elapsed();
        let t = Instant::now();
        let g = renderer.backward(&gs, &frame, &grad).unwrap();
        let _ = ctx.read::<f32>(&g.means, 1).unwrap();
        println!("gpu(lavapipe) forward {:?} backward {:?} intersections {}", tf, t.elapsed(), frame.num_intersections);
    }
    {
        use kiln_engine::gpu::sort::{RadixSorter, SortedKeys};
        let sorter = RadixSorter::new(&ctx).unwrap();
        let n = 901918usize;
        let hi: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(7919) % 1900).collect();
        let lo: Vec<u32> = (0..n as u32).map(|i| (1.0f32 + (i.wrapping_mul(104729) % 100000) as f32 * 1e-4).to_bits()).collect();
        let vals: Vec<u32> = (0..n as u32).collect();
        let input = SortedKeys { keys_hi: ctx.upload("h", &hi), keys_lo: ctx.upload("l", &lo), values: ctx.upload("v", &vals) };
        let _ = ctx.read::<u32>(&input.values, 1).unwrap();
        let t = Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let out = sorter.encode(&ctx, &mut enc, input, n as u32, 11);
        ctx.queue.submit([enc.finish()]);
        let _ = ctx.read::<u32>(&out.values, 1).unwrap();
        println!("gpu sort of {n}: {:?}", t.elapsed());
        let data = ctx.upload("s", &vals);
        let t = Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        sorter.scanner().encode(&ctx, &mut enc, &data, n as u32);
        ctx.queue.submit([enc.finish()]);
        let _ = ctx.read::<u32>(&data, 1).unwrap();
        println!("gpu scan of {n}: {:?}", t.elapsed());
    }
    let t = Instant::now();
    let r = render::render(&splats, &camera, [0.0; 3]);
    let tf = t.elapsed();
    let gi = kiln_engine::image_buf::ImageRgb::new(800, 600, [0.01; 3]);
    let t = Instant::now();
    let _ = render::render_backward(&splats, &camera, &r, [0.0; 3], &gi);
    println!("cpu forward {:?} backward {:?}", tf, t.elapsed());
}
