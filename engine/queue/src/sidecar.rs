//! `kiln.toml`: a sidecar file inside an input folder that overrides the job settings for that
//! folder alone, e.g.
//!
//! ```toml
//! # kiln.toml
//! preset = "preview"
//! formats = ["glb", "usdz"]
//! until = "poses"
//! steps = 3000
//! max_side = 1200
//! keep_all = true
//! ```
//!
//! Keys: `preset`, `formats`, `until`, `steps`, `max_side`, `keep_all`, `device`, `seed`.
//! The file is read by a small parser for exactly this subset of TOML (one `key = value` per
//! line, strings, integers, booleans, arrays of strings, `#` comments) rather than the `toml`
//! crate: these eight flat keys do not justify its parser stack (several crates) in the build,
//! and an unknown key or a malformed line is an error naming the file and line, as full TOML
//! would give.

use std::path::Path;
use std::str::FromStr;

use crate::QueueError;
use kiln_job::JobSettings;
use kiln_protocol::Preset;

/// The sidecar's file name inside an input folder.
pub const SIDECAR_FILE: &str = "kiln.toml";

/// Applies `folder/kiln.toml` to `settings` if the folder has one; returns whether it did.
pub fn apply_sidecar(folder: &Path, settings: &mut JobSettings) -> Result<bool, QueueError> {
    let path = folder.join(SIDECAR_FILE);
    if !path.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&path).map_err(QueueError::io(&path))?;
    apply_overrides(&text, settings).map_err(|problem| QueueError::BadInput { path: path.clone(), problem })?;
    Ok(true)
}

/// Applies every `key = value` line of `text`; the error says which line and why.
pub fn apply_overrides(text: &str, settings: &mut JobSettings) -> Result<(), String> {
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: expected `key = value`, found {raw:?}", index + 1))?;
        apply_one(key.trim(), &Value::parse(value.trim())?, settings)
            .map_err(|problem| format!("line {}: {problem}", index + 1))?;
    }
    Ok(())
}

/// A TOML value of the supported kinds.
#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Integer(u64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    fn parse(text: &str) -> Result<Value, String> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let items = inner.split(',').map(str::trim).filter(|s| !s.is_empty());
            return items
                .map(|item| unquote(item).ok_or_else(|| format!("expected a quoted string in the list, found {item}")))
                .collect::<Result<_, _>>()
                .map(Value::List);
        }
        if let Some(text) = unquote(text) {
            return Ok(Value::Text(text));
        }
        match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => text.replace('_', "").parse().map(Value::Integer).map_err(|_| format!("cannot read the value {text}")),
        }
    }

    fn text(&self) -> Result<&str, String> {
        match self {
            Value::Text(text) => Ok(text),
            other => Err(format!("expected a quoted string, found {other:?}")),
        }
    }

    fn integer(&self) -> Result<u64, String> {
        match self {
            Value::Integer(n) => Ok(*n),
            other => Err(format!("expected a whole number, found {other:?}")),
        }
    }
}

fn apply_one(key: &str, value: &Value, settings: &mut JobSettings) -> Result<(), String> {
    match key {
        "preset" => {
            let preset = Preset::from_str(value.text()?)?;
            let defaults = JobSettings::for_preset(preset);
            settings.preset = preset;
            settings.checkpoint_every = defaults.checkpoint_every;
        }
        "formats" => {
            let names = match value {
                Value::List(names) => names.clone(),
                other => other.text()?.split(',').map(str::to_owned).collect(),
            };
            settings.formats = names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
        }
        "until" => settings.until = value.text()?.parse()?,
        "device" => settings.device = value.text()?.parse()?,
        "steps" => settings.train_steps = Some(to_u32(value.integer()?)?),
        "max_side" => settings.max_side = Some(to_u32(value.integer()?)?),
        "seed" => settings.seed = value.integer()?,
        "keep_all" => match value {
            Value::Bool(keep) => settings.keep_all = *keep,
            other => return Err(format!("keep_all: expected true or false, found {other:?}")),
        },
        _ => {
            return Err(format!(
                "unknown key {key:?}: expected preset, formats, until, steps, max_side, keep_all, device or seed"
            ));
        }
    }
    Ok(())
}

fn to_u32(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// The text of a `"…"` or `'…'` string, without escapes.
fn unquote(text: &str) -> Option<String> {
    ['"', '\''].iter().find_map(|q| text.strip_prefix(*q).and_then(|t| t.strip_suffix(*q))).map(str::to_owned)
}

/// The line up to a `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..at],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_job::Stage;
    use kiln_protocol::Format;

    #[test]
    fn every_key_overrides_its_setting() {
        let mut settings = JobSettings::for_preset(Preset::Medium);
        let text = "# per-folder settings\npreset = \"preview\"  # fast\nformats = [\"glb\", 'obj']\nuntil = \"poses\"\nsteps = 1_500\nmax_side = 640\nkeep_all = true\ndevice = \"cpu\"\nseed = 7\n";
        apply_overrides(text, &mut settings).unwrap();
        let preview = JobSettings::for_preset(Preset::Preview);
        assert_eq!(settings.preset, Preset::Preview);
        assert_eq!(settings.checkpoint_every, preview.checkpoint_every);
        assert_eq!(settings.formats, vec![Format::Glb, Format::Obj]);
        assert_eq!(settings.until, Stage::Poses);
        assert_eq!(
            (settings.train_steps, settings.max_side, settings.keep_all, settings.seed),
            (Some(1500), Some(640), true, 7)
        );
        assert_eq!(settings.device, kiln_job::Device::Cpu);
    }

    #[test]
    fn formats_may_be_one_comma_separated_string() {
        let mut settings = JobSettings::for_preset(Preset::Medium);
        apply_overrides("formats = \"usdz,ply\"", &mut settings).unwrap();
        assert_eq!(settings.formats, vec![Format::Usdz, Format::Ply]);
    }

    #[test]
    fn mistakes_name_the_line_and_leave_no_guess() {
        let mut settings = JobSettings::for_preset(Preset::Medium);
        for (text, expected) in [
            ("preset = \"preview\"\nqualty = \"high\"", "line 2: unknown key \"qualty\""),
            ("steps = \"many\"", "line 1: expected a whole number"),
            ("until = \"later\"", "line 1: unknown stage"),
            ("just words", "line 1: expected `key = value`"),
            ("keep_all = 1", "line 1: keep_all: expected true or false"),
            ("formats = [glb]", "expected a quoted string in the list"),
        ] {
            let error = apply_overrides(text, &mut settings).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_sidecar_file_is_found_in_the_folder() {
        let dir = std::env::temp_dir().join(format!("kiln-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut settings = JobSettings::for_preset(Preset::Medium);
        assert!(!apply_sidecar(&dir, &mut settings).unwrap());
        std::fs::write(dir.join(SIDECAR_FILE), "until = 'check'\nbad").unwrap();
        let error = apply_sidecar(&dir, &mut settings).unwrap_err();
        assert!(error.to_string().contains("kiln.toml") && error.to_string().contains("line 2"), "{error}");
        std::fs::write(dir.join(SIDECAR_FILE), "until = 'check'").unwrap();
        assert!(apply_sidecar(&dir, &mut settings).unwrap());
        assert_eq!(settings.until, kiln_job::Stage::Check);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
