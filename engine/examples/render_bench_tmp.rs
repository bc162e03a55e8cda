use kiln_engine::image_buf::ImageRgb;
use kiln_engine::render::{self, testing};
use std::time::Instant;

fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    for &n in &[50_000usize, 100_000, 200_000] {
        for &sig in &[[0.3f32, 1.5], [0.3, 3.0], [0.5, 8.0]] {
            let camera = testing::default_camera(200, 150);
            let spec = testing::RandomSpec { count: n, max_opacity: 0.9, sigma_px: sig, sh_degree: 3 };
            let splats = testing::random_splats(1, &camera, &spec);
            let bg = [0.0; 3];
            let grad = ImageRgb::new(200, 150, [0.01, -0.02, 0.03]);
            let iters = 20;
            let c0 = cpu_s();
            let w0 = Instant::now();
            let (mut tp, mut tr, mut trb, mut tpb) = (0.0, 0.0, 0.0, 0.0);
            let mut entries = 0;
            for _ in 0..iters {
                let t0 = Instant::now();
                let projected = render::project(&splats, &camera);
                let t1 = Instant::now();
                let (out, state) = render::rasterize(&projected, 200, 150, bg);
                let t2 = Instant::now();
                let pg = render::rasterize_backward(&projected, &state, 200, 150, bg, &grad);
                let t3 = Instant::now();
                let g = render::project_backward(&splats, &camera, &projected, &pg);
                let t4 = Instant::now();
                std::hint::black_box((&out, &g));
                entries = state.sorted_ids.len();
                tp += (t1 - t0).as_secs_f64();
                tr += (t2 - t1).as_secs_f64();
                trb += (t3 - t2).as_secs_f64();
                tpb += (t4 - t3).as_secs_f64();
            }
            let ms = |t: f64| t * 1000.0 / iters as f64;
            println!("  cpu per iter {:.1} ms, wall per iter {:.1} ms", ms(cpu_s() - c0), ms(w0.elapsed().as_secs_f64()));
            println!(
                "n={n} sigma_px={sig:?} entries={entries}: project {:.2} ms, raster {:.2} ms, raster_bw {:.2} ms, project_bw {:.2} ms, total {:.2} ms",
                ms(tp), ms(tr), ms(trb), ms(tpb), ms(tp + tr + trb + tpb)
            );
        }
    }
}
