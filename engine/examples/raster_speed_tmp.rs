use kiln_engine::image_buf::ImageRgb;
use kiln_engine::render::{self, testing};
use std::time::Instant;

fn cpu_ms() -> f64 {
    let mut ns = 0u64;
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let s = std::fs::read_to_string(e.unwrap().path().join("schedstat")).unwrap_or_default();
        ns += s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    ns as f64 * 1e-6
}

fn main() {
    let iters: usize = std::env::var("ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    for &(n, sig) in &[(50_000usize, [0.3f32, 1.5]), (50_000, [0.5, 3.0]), (200_000, [0.3, 1.5])] {
        let camera = testing::default_camera(200, 150);
        let spec = testing::RandomSpec { count: n, max_opacity: 0.9, sigma_px: sig, sh_degree: 3 };
        let mut splats = testing::random_splats(1, &camera, &spec);
        // a few large ones
        let big = testing::RandomSpec { count: n / 200, max_opacity: 0.9, sigma_px: [5.0, 20.0], sh_degree: 3 };
        let b = testing::random_splats(2, &camera, &big);
        for i in 0..b.len() { splats.push(b.means[i], b.log_scales[i], b.rotations[i], b.opacity_logits[i], b.sh[i]); }
        let bg = [0.1, 0.2, 0.3];
        let mut grad = ImageRgb::new(200, 150, [0.0; 3]);
        for (i, p) in grad.pixels.iter_mut().enumerate() { let x = (i as f32 * 0.7548).sin(); *p = [0.01 * x, -0.02 * x * x, 0.03 - 0.01 * x]; }
        let mut best = [f64::MAX; 4];
        let mut entries = 0;
        let mut wall = f64::MAX;
        let mut check = 0.0f64;
        for _ in 0..iters {
            let t0 = (cpu_ms(), Instant::now());
            let projected = render::project(&splats, &camera);
            let t1 = (cpu_ms(), Instant::now());
            let (out, state) = render::rasterize(&projected, 200, 150, bg);
            let t2 = (cpu_ms(), Instant::now());
            let pg = render::rasterize_backward(&projected, &state, 200, 150, bg, &grad);
            let t3 = (cpu_ms(), Instant::now());
            let g = render::project_backward(&splats, &camera, &projected, &pg);
            let t4 = (cpu_ms(), Instant::now());
            check = out.image.pixels.iter().map(|p| (p[0] + 2.0 * p[1] + 3.0 * p[2]) as f64).sum::<f64>()
                + pg.iter().map(|q| (q.mean2d[0] + q.conic[1] + q.opacity + q.color[2]) as f64).sum::<f64>()
                + g.means.iter().map(|m| m[0] as f64).sum::<f64>();
            entries = state.sorted_ids.len();
            let d = [t1.0 - t0.0, t2.0 - t1.0, t3.0 - t2.0, t4.0 - t3.0];
            for k in 0..4 { best[k] = best[k].min(d[k]); }
            wall = wall.min((t4.1 - t0.1).as_secs_f64() * 1e3);
        }
        println!(
            "n={} sigma_px={sig:?} entries={entries}: project {:.2} raster {:.2} raster_bw {:.2} project_bw {:.2} cpu total {:.2} ms, wall {wall:.2} ms (min of {iters}) check={check:.9e}",
            splats.len(), best[0], best[1], best[2], best[3], best.iter().sum::<f64>()
        );
    }
}
