//! The settings flags every job command shares, turned into the protocol's [`SettingsOverrides`]
//! (the form `kiln.toml`, CSV columns and the API take too), and the input of a one-job command
//! (`kiln reconstruct`, `kiln cloud submit`) with its settings: [`SettingsArgs::job_input`].
//!
//! One job's input is a folder of photos, a `.zip` of them, or a `kiln.toml` job spec
//! ([`kiln_protocol::job_spec`]) whose folder holds the photos; a folder's own `kiln.toml` is its
//! job spec too, so the folder and its spec mean the same job. Its settings are the preset's
//! defaults, under the spec's, under the flags given: the command line names this one job, so it
//! has the last word (for a batch or a watched folder the flags are about every item, and each
//! item's `kiln.toml` wins over them instead).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_protocol::job_spec::{JOB_SPEC_FILE, parse_job_spec};
use kiln_protocol::{Device, Format, Preset, SettingsOverrides, Stage};

/// The job settings flags of `kiln reconstruct`, `kiln batch` and `kiln watch`. For a batch or a
/// watched folder they are every item's settings, which an input folder's `kiln.toml` and a CSV
/// row's columns override for their item. What no flag sets is the preset's default.
#[derive(clap::Args)]
pub struct SettingsArgs {
    /// Quality preset: preview, reduced, medium (the default), full or raw.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Comma-separated export formats: glb, usdz, obj, ply (glb,usdz by default).
    #[arg(long, value_delimiter = ',')]
    pub formats: Option<Vec<Format>>,
    /// Training device: cpu, gpu or auto (the default).
    #[arg(long)]
    pub device: Option<Device>,
    /// Use the photos the capture check rejects too.
    #[arg(long)]
    pub keep_all: bool,
    /// Training steps, instead of the preset's.
    #[arg(long)]
    pub steps: Option<u32>,
    /// Longer image side for training and baking, pixels, instead of the preset's.
    #[arg(long)]
    pub max_side: Option<u32>,
    /// Steps between training checkpoints, instead of the preset's.
    #[arg(long)]
    pub checkpoint_every: Option<u32>,
    /// The object's longest side in millimetres: exports in true size.
    #[arg(long, value_name = "N")]
    pub size_mm: Option<f64>,
    /// Last stage to run: check, poses, train, mesh or export (the default).
    #[arg(long)]
    pub until: Option<Stage>,
}

impl SettingsArgs {
    /// The flags as the protocol's overrides (only the flags given are set), checked.
    pub fn overrides(&self) -> Result<SettingsOverrides> {
        let overrides = SettingsOverrides {
            preset: self.preset,
            formats: self.formats.clone(),
            device: self.device,
            keep_all: self.keep_all.then_some(true),
            train_steps: self.steps,
            max_side: self.max_side,
            checkpoint_every: self.checkpoint_every,
            size_mm: self.size_mm,
            until: self.until,
            ..SettingsOverrides::default()
        };
        overrides.validate().map_err(anyhow::Error::msg)?;
        Ok(overrides)
    }
}

/// One job's photos and settings, as [`SettingsArgs::job_input`] found them.
#[derive(Debug)]
pub struct JobInput {
    /// A folder of photos or a `.zip` of them.
    pub photos: PathBuf,
    /// The `kiln.toml` the settings came from, when there was one.
    pub spec: Option<PathBuf>,
    /// The flags over the spec, checked.
    pub overrides: SettingsOverrides,
}

impl JobInput {
    /// `settings from <spec>`, for the line a command prints before it starts or quotes.
    pub fn settings_from(&self) -> Option<String> {
        self.spec.as_ref().map(|spec| format!("settings from {}", spec.display()))
    }
}

/// A job spec that cannot be used: what is wrong first, the file last (exit code 2).
#[derive(Debug)]
pub struct BadSpec {
    pub path: PathBuf,
    pub problem: String,
}

impl std::fmt::Display for BadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.problem, self.path.display())
    }
}

impl std::error::Error for BadSpec {}

impl SettingsArgs {
    /// The job of `input` (a folder of photos, a `.zip`, or a `kiln.toml` beside its photos): its
    /// photos, and these flags over its job spec.
    pub fn job_input(&self, input: &Path) -> Result<JobInput> {
        let flags = self.overrides()?;
        let (photos, spec) = locate(input)?;
        let from_spec = match &spec {
            Some(path) => read_job_spec(path)?,
            None => SettingsOverrides::default(),
        };
        Ok(JobInput { photos, spec, overrides: flags.over(&from_spec) })
    }
}

/// The photos of `input` and its job spec, if any: a folder and its `kiln.toml` when it has one;
/// a `kiln.toml`, its folder and itself; anything else (a `.zip`) alone.
fn locate(input: &Path) -> Result<(PathBuf, Option<PathBuf>), BadSpec> {
    if input.is_dir() {
        let spec = input.join(JOB_SPEC_FILE);
        return Ok((input.to_path_buf(), spec.is_file().then_some(spec)));
    }
    let is_toml = input.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if !is_toml {
        return Ok((input.to_path_buf(), None));
    }
    if input.file_name().is_none_or(|name| name != JOB_SPEC_FILE) {
        // `kiln batch` and `kiln watch` find a folder's spec by this name alone: another name
        // would be a spec only here.
        return Err(BadSpec {
            path: input.to_path_buf(),
            problem: format!("a job spec is named {JOB_SPEC_FILE}, in the folder of its photos"),
        });
    }
    let folder = match input.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((folder, Some(input.to_path_buf())))
}

/// The overrides the job spec `path` gives.
fn read_job_spec(path: &Path) -> Result<SettingsOverrides> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData) => {
            let problem = match error.kind() {
                std::io::ErrorKind::NotFound => "no such job spec",
                _ => "a job spec is TOML, which is UTF-8 text, and this file is not",
            };
            return Err(BadSpec { path: path.to_path_buf(), problem: problem.to_string() }.into());
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(parse_job_spec(&text).map_err(|problem| BadSpec { path: path.to_path_buf(), problem })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The flags as a command line gives them.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingsArgs,
    }

    fn flags(args: &[&str]) -> SettingsArgs {
        Flags::try_parse_from(std::iter::once("kiln").chain(args.iter().copied())).unwrap().settings
    }

    /// A fresh folder with one photo and, when given, a `kiln.toml` of `spec`.
    fn photos(tag: &str, spec: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-cli-spec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0000.jpg"), b"x").unwrap();
        if let Some(spec) = spec {
            std::fs::write(dir.join(JOB_SPEC_FILE), spec).unwrap();
        }
        dir
    }

    const SPEC: &str = "preset = \"preview\"\nformats = [\"obj\", \"ply\"]\nuntil = \"poses\"\n";

    #[test]
    fn the_spec_gives_the_settings_of_its_folder_or_of_itself() {
        let dir = photos("used", Some(SPEC));
        let spec = dir.join(JOB_SPEC_FILE);
        for input in [dir.clone(), spec.clone()] {
            let job = flags(&[]).job_input(&input).unwrap();
            assert_eq!((&job.photos, job.spec.as_ref()), (&dir, Some(&spec)), "{}", input.display());
            let settings = job.overrides.settings();
            assert_eq!((settings.preset, settings.until), (Preset::Preview, Stage::Poses));
            assert_eq!(settings.formats, [Format::Obj, Format::Ply]);
            assert_eq!(settings.checkpoint_every, Preset::Preview.checkpoint_every(), "the spec's preset's default");
            assert_eq!(job.settings_from(), Some(format!("settings from {}", spec.display())));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_given_win_over_the_spec_and_the_spec_over_the_preset() {
        let dir = photos("flags", Some(SPEC));
        let job = flags(&["--until", "check", "--steps", "99", "--formats", "glb"]).job_input(&dir).unwrap();
        let settings = job.overrides.settings();
        assert_eq!((settings.until, settings.train_steps), (Stage::Check, Some(99)), "the flags'");
        assert_eq!(settings.formats, [Format::Glb], "a flag's list replaces the spec's");
        assert_eq!(settings.preset, Preset::Preview, "the spec's, where no flag is given");
        let job = flags(&["--preset", "full"]).job_input(&dir.join(JOB_SPEC_FILE)).unwrap();
        assert_eq!(job.overrides.settings().preset, Preset::Full);
        assert_eq!(job.overrides.settings().checkpoint_every, Preset::Full.checkpoint_every());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_without_a_spec_and_a_zip_take_the_flags_alone() {
        let dir = photos("none", None);
        let job = flags(&["--preset", "reduced"]).job_input(&dir).unwrap();
        assert_eq!((job.spec, job.overrides.preset), (None, Some(Preset::Reduced)));
        assert_eq!(job.overrides, flags(&["--preset", "reduced"]).overrides().unwrap());
        // A spec beside a .zip is not the .zip's: a .zip carries no settings.
        std::fs::write(dir.join(JOB_SPEC_FILE), SPEC).unwrap();
        let zip = dir.join("photos.zip");
        let job = flags(&[]).job_input(&zip).unwrap();
        assert_eq!((job.photos, job.spec, job.overrides), (zip, None, SettingsOverrides::default()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_spec_is_bad_input_saying_what_is_wrong_then_the_file() {
        let dir = photos("bad", None);
        let spec = dir.join(JOB_SPEC_FILE);
        let at_the_end = spec.display().to_string();
        for (text, problem) in [
            ("preset = \"preview\"\nqualty = \"high\"\n", "unknown field `qualty`, expected one of `preset`"),
            ("max_side = \"big\"\n", "max_side: invalid type: string \"big\", expected u32 (line 1, column 12)"),
            ("max_side = 0\n", "max_side must be positive"),
            ("preset = \"preview\"\njust words\n", "(line 2, column"),
        ] {
            std::fs::write(&spec, text).unwrap();
            for input in [&dir, &spec] {
                let error = flags(&[]).job_input(input).unwrap_err();
                let bad = error.downcast_ref::<BadSpec>().unwrap_or_else(|| panic!("{text:?}: {error:#}"));
                assert_eq!(bad.path, spec);
                let message = error.to_string();
                assert!(message.contains(problem) && message.ends_with(&at_the_end), "{text:?}: {message}");
                assert!(message.find(problem) < message.find(&at_the_end), "the problem first: {message}");
                assert!(crate::is_bad_input(&error), "exit code 2: {message}");
            }
        }
        // Even where a flag would override the bad key, the spec is refused.
        std::fs::write(&spec, "max_side = \"big\"\n").unwrap();
        assert!(flags(&["--max-side", "640"]).job_input(&dir).is_err_and(|e| e.is::<BadSpec>()));
        std::fs::write(&spec, [0xff, 0xfe, b'=']).unwrap();
        assert!(flags(&[]).job_input(&spec).is_err_and(|e| e.is::<BadSpec>() && crate::is_bad_input(&e)));
        std::fs::remove_file(&spec).unwrap();
        let error = flags(&[]).job_input(&spec).unwrap_err();
        assert_eq!(error.to_string(), format!("no such job spec: {at_the_end}"));
        assert!(crate::is_bad_input(&error));
        let other = dir.join("mug.toml");
        std::fs::write(&other, SPEC).unwrap();
        let error = flags(&[]).job_input(&other).unwrap_err();
        assert!(error.is::<BadSpec>() && error.to_string().starts_with("a job spec is named kiln.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spec_named_alone_is_in_the_current_folder() {
        assert_eq!(locate(Path::new(JOB_SPEC_FILE)).unwrap(), (PathBuf::from("."), Some(PathBuf::from(JOB_SPEC_FILE))));
    }
}
