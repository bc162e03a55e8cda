//! `kiln view` for real: under a virtual X server (Xvfb) the window opens on a GLB made here (a
//! sphere, orange on its upper half and green on its lower half, written by the engine's GLB
//! exporter), a screenshot of the X screen is taken from outside the process (`xwd`), and the
//! model's pixels must be in the window: both colours present, orange above green (world +Y is up
//! on screen), a round silhouette (square pixels, right projection) in the viewport, not in the
//! side panel, on the chosen background colour. A second run saves egui's own screenshot and
//! exits by itself (`--screenshot`, `--exit-after-frames`).
//!
//! Needs `Xvfb`, `xwd` and `xwininfo` (Debian: `xvfb`, `x11-apps`, `x11-utils`) and a Vulkan
//! driver (lavapipe from `mesa-vulkan-drivers` in CI); prints SKIPPED without the X tools. Errors
//! that need no display (a missing file) are checked everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "window")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_core::mesh::{TexturedMesh, TriMesh};
use kiln_export::glb::write_glb;

mod common;
use common::kiln;

/// Background given to `kiln view`: a dark blue neither model colour is near.
const BACKGROUND: [u8; 3] = [20, 30, 120];
/// Top half of the sphere's texture.
const ORANGE: [u8; 3] = [240, 140, 20];
/// Bottom half of the sphere's texture.
const GREEN: [u8; 3] = [40, 200, 60];
/// lavapipe compiles every shader on the CPU, on a machine other builds share: generous.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(240);

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn has_tool(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// A unit sphere around the origin, poles on ±Y, UV `v` from the north pole (0) to the south (1),
/// textured orange above the equator and green below.
fn two_tone_sphere() -> TexturedMesh {
    let mut mesh = TriMesh::uv_sphere(24, 48, |_| 0.5);
    // The generator's poles are on ±Z; turning −90° about X puts them on ±Y (a proper rotation,
    // so the winding stays counter-clockwise from outside).
    for p in &mut mesh.positions {
        *p = [p[0], p[2], -p[1]];
    }
    mesh.uvs =
        mesh.positions.iter().map(|p| [0.5, (p[1] / 0.5).clamp(-1.0, 1.0).acos() / std::f32::consts::PI]).collect();
    let base_color = image::RgbImage::from_fn(8, 8, |_, y| image::Rgb(if y < 4 { ORANGE } else { GREEN }));
    TexturedMesh { mesh, base_color, normal_map: None }
}

/// Kills and reaps a child process when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb that is stopped with SIGTERM (so that it removes its socket and lock file, which a
/// SIGKILL leaves behind in `/tmp`), and killed only if it has not gone within two seconds.
struct XServer(Child);

impl Drop for XServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a display it picks itself (`-displayfd`) and returns it with its name (`:N`).
///
/// `-noreset`: by default an X server resets when its last client disconnects, and a client that
/// connects during the reset is dropped before its setup is answered (its `XOpenDisplay` fails).
/// The control screenshot below is such a last client, and `kiln view` connects right after it:
/// on CI this failed as "Failed to open connection to X server".
fn start_xvfb() -> (XServer, String) {
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", "1400x900x24", "-nolisten", "tcp", "-noreset"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let display = format!(":{}", line.trim());
    assert!(line.trim().parse::<u32>().is_ok(), "Xvfb did not report a display: {line:?}");
    (XServer(child), display)
}

fn view_command(display: &str, runtime_dir: &Path, model: &Path) -> Command {
    let mut command = kiln();
    command
        .arg("view")
        .arg(model)
        .args(["--background", &format!("{},{},{}", BACKGROUND[0], BACKGROUND[1], BACKGROUND[2])])
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("WGPU_BACKEND", "vulkan")
        // Adapter choice and surface set-up in the log, for when the window fails on a CI machine.
        .env("KILN_LOG", "info,wgpu_core=warn,naga=warn");
    command
}

/// `vulkaninfo --summary` on `display`: the Vulkan devices this machine offers, for a failure
/// message.
fn vulkan_summary(display: &str) -> String {
    match Command::new("vulkaninfo").arg("--summary").env("DISPLAY", display).output() {
        Ok(output) => format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        Err(error) => format!("(vulkaninfo: {error})"),
    }
}

/// Geometry `(x, y, width, height)` on the screen of the top-level window whose title starts with
/// "Kiln", from `xwininfo -root -tree`.
fn find_window(display: &str) -> Option<(usize, usize, usize, usize)> {
    let output = Command::new("xwininfo").args(["-root", "-tree", "-display", display]).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|line| line.contains("\"Kiln"))?;
    // `0x… "Kiln — …": ("kiln-view" "kiln-view")  1280x760+0+0  +0+0`: size, then absolute position.
    let mut fields = line.split_whitespace().rev();
    let absolute = fields.next()?;
    let size = fields.next()?;
    let (width, rest) = size.split_once('x')?;
    let height = rest.split(['+', '-']).next()?;
    let mut position = absolute.trim_start_matches('+').split('+');
    let x = position.next()?.parse().ok()?;
    let y = position.next()?.parse().ok()?;
    Some((x, y, width.parse().ok()?, height.parse().ok()?))
}

/// An RGB screenshot: `pixels[row * width + column]`.
struct Screenshot {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Screenshot {
    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }

    fn to_png(&self, path: &Path) {
        let bytes = self.pixels.iter().flatten().copied().collect();
        image::RgbImage::from_raw(self.width as u32, self.height as u32, bytes).unwrap().save(path).unwrap();
    }
}

/// The whole X screen, as `xwd -root` dumps it.
fn grab_screen(display: &str) -> Screenshot {
    let output = Command::new("xwd").args(["-root", "-silent", "-display", display]).output().expect("run xwd");
    assert!(output.status.success(), "xwd failed: {}", String::from_utf8_lossy(&output.stderr));
    parse_xwd(&output.stdout)
}

/// Decodes an XWD (X Window Dump, version 7) file of a 24- or 32-bit TrueColor screen: a
/// big-endian header of 25 32-bit fields, the window name, `ncolors` 12-byte colour entries,
/// then rows of `bytes_per_line` bytes with pixels in the dump's byte order.
fn parse_xwd(bytes: &[u8]) -> Screenshot {
    let field = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let (header_size, version) = (field(0) as usize, field(1));
    assert_eq!(version, 7, "not an XWD version 7 file");
    let (width, height) = (field(4) as usize, field(5) as usize);
    let (byte_order, bits_per_pixel, bytes_per_line) = (field(7), field(11), field(12) as usize);
    let masks = [field(14), field(15), field(16)];
    let ncolors = field(19) as usize;
    assert_eq!(bits_per_pixel, 32, "expected a 32-bit-per-pixel dump");
    let data = &bytes[header_size + 12 * ncolors..];
    let channel = |value: u32, mask: u32| ((value & mask) >> mask.trailing_zeros()) as u8;
    let pixels = (0..height)
        .flat_map(|y| (0..width).map(move |x| (y, x)))
        .map(|(y, x)| {
            let raw: [u8; 4] = data[y * bytes_per_line + 4 * x..][..4].try_into().unwrap();
            let value = if byte_order == 0 { u32::from_le_bytes(raw) } else { u32::from_be_bytes(raw) };
            masks.map(|mask| channel(value, mask))
        })
        .collect();
    Screenshot { width, height, pixels }
}

fn is_background(p: [u8; 3]) -> bool {
    p.iter().zip(BACKGROUND).all(|(&a, b)| a.abs_diff(b) <= 3)
}

/// Orange under any lighting: red clearly above green, green clearly above blue.
fn is_orange(p: [u8; 3]) -> bool {
    let [r, g, b] = p.map(i32::from);
    r > g + 25 && g > b + 25
}

/// Green under any lighting: green clearly above both red and blue.
fn is_green(p: [u8; 3]) -> bool {
    let [r, g, b] = p.map(i32::from);
    g > r + 40 && g > b + 40
}

/// Pixels of one colour class inside a rectangle: count, centroid and bounding box.
#[derive(Debug)]
struct Blob {
    count: usize,
    centroid: (f64, f64),
    min: (usize, usize),
    max: (usize, usize),
}

fn blob(shot: &Screenshot, (x0, y0, w, h): (usize, usize, usize, usize), test: impl Fn([u8; 3]) -> bool) -> Blob {
    let (mut count, mut sx, mut sy) = (0, 0.0, 0.0);
    let (mut min, mut max) = ((usize::MAX, usize::MAX), (0, 0));
    for y in y0..(y0 + h).min(shot.height) {
        for x in x0..(x0 + w).min(shot.width) {
            if test(shot.at(x, y)) {
                count += 1;
                sx += x as f64;
                sy += y as f64;
                min = (min.0.min(x), min.1.min(y));
                max = (max.0.max(x), max.1.max(y));
            }
        }
    }
    Blob { count, centroid: (sx / count.max(1) as f64, sy / count.max(1) as f64), min, max }
}

/// Polls until `done` returns `Some`, or panics after `timeout` naming `what` and quoting
/// `kiln view`'s log (its stderr), so that a failure on a CI machine says why.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    child: &mut Reaped,
    log: &Path,
    display: &str,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    let log_text = || {
        let log = std::fs::read_to_string(log).unwrap_or_else(|error| format!("({}: {error})", log.display()));
        format!("{log}\nvulkaninfo --summary:\n{}", vulkan_summary(display))
    };
    loop {
        if let Some(value) = done() {
            return value;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("kiln view exited ({status}) before {what}; its log:\n{}", log_text());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; kiln view's log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn view_of_a_missing_file_is_a_bad_input_error_naming_it() {
    let missing = std::env::temp_dir().join("kiln-no-such-model.glb");
    let output = kiln().arg("view").arg(&missing).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("kiln-no-such-model.glb"), "stderr: {stderr}");
}

#[test]
fn view_window_shows_the_model_under_xvfb() {
    for tool in ["Xvfb", "xwd", "xwininfo"] {
        if !has_tool(tool) {
            println!(
                "SKIPPED: `{tool}` is not installed (Debian: xvfb x11-apps x11-utils); the window test needs an X server"
            );
            return;
        }
    }
    let dir = fresh_dir("view");
    let model = dir.join("two-tone-sphere.glb");
    write_glb(&model, &two_tone_sphere()).unwrap();
    let runtime_dir = dir.join("runtime");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    let (_xvfb, display) = start_xvfb();

    // Control: the empty screen has no model-coloured pixels, so the classifiers below do not
    // fire on their own.
    let empty = grab_screen(&display);
    let everything = (0, 0, empty.width, empty.height);
    assert_eq!(blob(&empty, everything, is_orange).count + blob(&empty, everything, is_green).count, 0);

    let log_path = dir.join("kiln-view.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut view = Reaped(view_command(&display, &runtime_dir, &model).stderr(log).spawn().unwrap());
    let window =
        wait_for("the window to be mapped", WINDOW_TIMEOUT, &mut view, &log_path, &display, || find_window(&display));
    let (wx, wy, ww, wh) = window;
    println!("window at {wx},{wy}, {ww}×{wh} on {display}");
    // The scene is drawn once the render and the photo-free viewport are up: poll the real screen.
    let shot = wait_for("the model's pixels on screen", WINDOW_TIMEOUT, &mut view, &log_path, &display, || {
        let shot = grab_screen(&display);
        let orange = blob(&shot, window, is_orange).count;
        (orange > 0 && blob(&shot, window, is_green).count > 0).then_some(shot)
    });
    // One more frame's time so that a frame caught mid-present is not what is judged.
    std::thread::sleep(Duration::from_millis(500));
    let shot = {
        let again = grab_screen(&display);
        if blob(&again, window, is_orange).count > 0 { again } else { shot }
    };
    shot.to_png(&dir.join("screen.png"));
    println!("screenshot: {}", dir.join("screen.png").display());

    let orange = blob(&shot, window, is_orange);
    let green = blob(&shot, window, is_green);
    let background = blob(&shot, window, is_background);
    let area = (ww * wh) as f64;
    println!("orange {orange:?}\ngreen {green:?}\nbackground {} px of {area}", background.count);
    assert!(orange.count as f64 > 0.01 * area && green.count as f64 > 0.01 * area, "model too small or absent");
    assert!(background.count as f64 > 0.2 * area, "the viewport's background colour is missing");
    // World +Y (the orange half) is up on screen.
    assert!(
        orange.centroid.1 + 10.0 < green.centroid.1,
        "orange at row {}, green at row {}",
        orange.centroid.1,
        green.centroid.1
    );
    // Together they make a disc: as wide as tall, within a few pixels of shading at the rim.
    let (left, top) = (orange.min.0.min(green.min.0), orange.min.1.min(green.min.1));
    let (right, bottom) = (orange.max.0.max(green.max.0), orange.max.1.max(green.max.1));
    let (disc_w, disc_h) = ((right - left + 1) as f64, (bottom - top + 1) as f64);
    assert!((disc_w / disc_h - 1.0).abs() < 0.12, "silhouette {disc_w}×{disc_h} is not round");
    // In the viewport right of the side panel, and the disc's centre pixel is the model.
    let (cx, cy) = ((left + right) / 2, (top + bottom) / 2);
    assert!(cx > wx + ww / 4, "model centred at x={cx}, inside the side panel");
    assert!(!is_background(shot.at(cx, cy)), "the disc's centre {:?} is background", shot.at(cx, cy));

    drop(view);
    // egui's own screenshot, and the window closing by itself.
    let saved = dir.join("in-app.png");
    let run = view_command(&display, &runtime_dir, &model)
        .args(["--exit-after-frames", "5", "--screenshot"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "kiln view --screenshot exited with {}: {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let image = image::open(&saved).unwrap().to_rgb8();
    let inner = Screenshot {
        width: image.width() as usize,
        height: image.height() as usize,
        pixels: image.pixels().map(|p| p.0).collect(),
    };
    let all = (0, 0, inner.width, inner.height);
    let (orange, green) = (blob(&inner, all, is_orange), blob(&inner, all, is_green));
    assert!(orange.count > 1000 && green.count > 1000, "in-app screenshot: orange {orange:?}, green {green:?}");
    assert!(orange.centroid.1 < green.centroid.1);
}
