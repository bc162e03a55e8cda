//! `kiln.toml`: a job's settings in a file, the job spec every front end reads the same way. It
//! lies in the folder of the photos it is about, e.g.
//!
//! ```toml
//! # kiln.toml
//! preset = "preview"
//! formats = ["glb", "usdz"]
//! until = "poses"
//! train_steps = 3_000
//! max_side = 1200
//! keep_all = true
//! size_mm = 142.5
//! ```
//!
//! `kiln reconstruct` and `kiln cloud submit` take the folder (its `kiln.toml` is read when there
//! is one) or the `kiln.toml` itself; `kiln batch` and `kiln watch` read the one in each input
//! folder. The file is full TOML (read by the `toml` crate) deserialized into
//! [`SettingsOverrides`], so its keys are exactly that type's fields, with the names and values
//! every other front end uses: `preset`, `formats` (an array), `device`, `keep_all`,
//! `train_steps`, `max_side`, `checkpoint_every`, `max_triangles`, `texture_size`, `seed`,
//! `size_mm`, `until`. A key not among them (a typo, a table such as `[render]`) is an error, not
//! ignored; so is a value of the wrong kind or out of range. Errors say what is wrong first, with
//! the key and the line and column where TOML found it; the front end names the file last.
//!
//! Built with the crate's `toml` feature only, so the types alone stay serde alone.

use crate::SettingsOverrides;

/// The job spec's file name inside the folder of its photos.
pub const JOB_SPEC_FILE: &str = "kiln.toml";

/// The overrides `text` (a job spec's content) gives, checked with
/// [`SettingsOverrides::validate`]; the error says what is wrong, which key, and where, in one
/// line (the caller names the file after it).
pub fn parse_job_spec(text: &str) -> Result<SettingsOverrides, String> {
    let overrides: SettingsOverrides = toml::from_str(text).map_err(|error| describe(text, &error))?;
    overrides.validate()?;
    Ok(overrides)
}

/// `error` in one line: its message, the key it is about when the message does not name it, and
/// the line and column of its span.
fn describe(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    let Some(span) = error.span() else { return message };
    let (line, column) = line_and_column(text, span.start);
    match key_at(text, span.start) {
        Some(key) if !message.contains(&format!("`{key}`")) => {
            format!("{key}: {message} (line {line}, column {column})")
        }
        _ => format!("{message} (line {line}, column {column})"),
    }
}

/// The top-level key whose name or value covers byte `offset` of `text`, when `text` is valid
/// TOML (an error in the value of `train_steps` is about `train_steps`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    table.get_ref().iter().find_map(|(key, value)| {
        let covers = key.span().contains(&offset) || value.span().contains(&offset);
        covers.then(|| key.get_ref().to_string())
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`, as TOML counts them.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Format, Preset, Stage};

    #[test]
    fn every_key_overrides_its_setting_in_full_toml() {
        let text = r#"
# per-folder settings
preset = "preview"   # fast
formats = [
    "glb",
    'obj',           # literal strings and trailing commas are TOML too
]
until = "poses"
train_steps = 1_500
max_side = 640
checkpoint_every = 250
max_triangles = 20_000
texture_size = 1024
keep_all = true
device = "cpu"
seed = 0x2a
size_mm = 142.5
"#;
        let overrides = parse_job_spec(text).unwrap();
        let settings = overrides.settings();
        assert_eq!(settings.preset, Preset::Preview);
        assert_eq!(settings.formats, vec![Format::Glb, Format::Obj]);
        assert_eq!(settings.until, Stage::Poses);
        assert_eq!(settings.device, Device::Cpu);
        assert_eq!(
            (settings.train_steps, settings.max_side, settings.checkpoint_every, settings.max_triangles),
            (Some(1500), Some(640), 250, Some(20_000))
        );
        assert_eq!((settings.texture_size, settings.keep_all, settings.seed), (Some(1024), true, 42));
        assert_eq!(settings.size_mm, Some(142.5));
    }

    #[test]
    fn an_empty_spec_overrides_nothing_and_the_preset_brings_its_own_defaults() {
        assert_eq!(parse_job_spec("# nothing to change\n").unwrap(), SettingsOverrides::default());
        let full = parse_job_spec("preset = 'full'").unwrap().settings();
        assert_eq!(full.checkpoint_every, Preset::Full.checkpoint_every(), "the preset's, not the default's");
    }

    #[test]
    fn a_typo_names_the_key_and_where_it_is() {
        let error = parse_job_spec("preset = \"preview\"\nqualty = \"high\"").unwrap_err();
        assert!(error.starts_with("unknown field `qualty`, expected one of `preset`"), "{error}");
        assert!(error.ends_with("(line 2, column 1)"), "{error}");
        // `steps`, the flag's name and early specs' key, is kept as another name for `train_steps`.
        assert_eq!(parse_job_spec("steps = 3000").map(|o| o.train_steps), Ok(Some(3000)));
    }

    #[test]
    fn a_bad_value_names_its_key_and_where_it_is() {
        for (text, expected) in [
            ("train_steps = \"many\"", "train_steps: invalid type: string \"many\", expected u32 (line 1, column 15)"),
            ("\n\nuntil = \"later\"", "until: unknown variant `later`, expected one of"),
            ("keep_all = 1", "keep_all: invalid type: integer `1`, expected a boolean (line 1, column 12)"),
            ("formats = [\"glb\", \"gltf\"]", "formats: unknown variant `gltf`"),
            ("formats = \"glb,usdz\"", "formats: invalid type: string \"glb,usdz\", expected a sequence"),
            ("max_side = -5", "max_side: invalid value: integer `-5`, expected u32"),
            ("train_steps = { n = 3 }", "train_steps: invalid type: map, expected u32"),
            ("preset = { name = \"full\" }", "preset: unknown variant `name`"),
        ] {
            let error = parse_job_spec(text).unwrap_err();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
        assert!(parse_job_spec("\n\nuntil = \"later\"").unwrap_err().ends_with("(line 3, column 9)"));
        assert_eq!(parse_job_spec("max_side = 0").unwrap_err(), "max_side must be positive");
        assert!(parse_job_spec("size_mm = -3.0").unwrap_err().starts_with("size_mm must be"));
        assert_eq!(parse_job_spec("formats = []").unwrap_err(), "formats must name at least one format");
    }

    #[test]
    fn tables_and_broken_toml_are_refused_with_their_place() {
        let error = parse_job_spec("preset = \"full\"\n\n[render]\nwidth = 3").unwrap_err();
        assert!(error.starts_with("unknown field `render`") && error.contains("line 3"), "{error}");
        let error = parse_job_spec("preset = \"full\"\njust words").unwrap_err();
        assert!(error.contains("(line 2, column"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        let error = parse_job_spec("preset = \"full").unwrap_err();
        assert!(error.contains("line 1"), "{error}");
    }
}
