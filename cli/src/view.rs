//! `kiln view`: opens the eframe window on a model file or a job folder (splats, mesh, cameras,
//! sparse points, whatever it holds). Built with the `window` feature (on by default); without it
//! the subcommand does not exist and the binary carries no windowing code.

#[cfg(feature = "window")]
pub use window::{ViewArgs, run};

/// Whether `cause` is a viewer error about the file the user gave (exit code 2).
pub fn is_bad_input(cause: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "window")]
    if let Some(error) = cause.downcast_ref::<kiln_viewer::app::WindowError>() {
        return error.is_bad_input();
    }
    let _ = cause;
    false
}

#[cfg(feature = "window")]
mod window {
    use std::path::PathBuf;
    use std::str::FromStr;

    use anyhow::Result;
    use kiln_viewer::app::WindowOptions;

    #[derive(clap::Args)]
    pub struct ViewArgs {
        /// A splat PLY (Kiln's or the INRIA layout), a GLB/glTF, a COLMAP model, a
        /// transforms.json, or a job folder.
        pub path: PathBuf,
        /// Background colour as R,G,B (0–255).
        #[arg(long, default_value = "30,30,36")]
        pub background: Rgb,
        /// Open looking through input camera N (0-based), with its photo over the render.
        #[arg(long)]
        pub camera: Option<usize>,
        /// Save a screenshot of the window to this PNG, then close (after --exit-after-frames
        /// frames, 10 by default).
        #[arg(long)]
        pub screenshot: Option<PathBuf>,
        /// Close the window after N frames (scripts and tests).
        #[arg(long)]
        pub exit_after_frames: Option<u32>,
    }

    /// An sRGB colour given as `R,G,B`.
    #[derive(Clone, Copy, Debug)]
    pub struct Rgb([u8; 3]);

    impl FromStr for Rgb {
        type Err = String;

        fn from_str(text: &str) -> Result<Self, String> {
            let parts = text
                .split(',')
                .map(|part| part.trim().parse::<u8>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("`{text}`: {error} (expected R,G,B with each 0–255)"))?;
            let rgb: [u8; 3] = parts.try_into().map_err(|_| format!("`{text}`: expected three numbers R,G,B"))?;
            Ok(Self(rgb))
        }
    }

    pub fn run(args: &ViewArgs) -> Result<()> {
        let shown = kiln_viewer::app::run(WindowOptions {
            path: args.path.clone(),
            background: args.background.0,
            camera: args.camera,
            exit_after_frames: args.exit_after_frames,
            screenshot: args.screenshot.clone(),
        });
        if let Err(kiln_viewer::app::WindowError::NoDisplay(_)) = &shown {
            eprintln!("hint: run `kiln view` in a desktop session, or render to a PNG with `kiln render`");
        }
        Ok(shown?)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn background_parses_three_bytes() {
            assert_eq!(Rgb::from_str("30, 40,255").map(|c| c.0), Ok([30, 40, 255]));
            assert!(Rgb::from_str("1,2").is_err());
            assert!(Rgb::from_str("1,2,256").is_err());
            assert!(Rgb::from_str("red").is_err());
        }
    }
}
