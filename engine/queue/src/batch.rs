//! `kiln batch`: many inputs, each its own job, one after the other; a failing item does not stop
//! the others. The items come from
//! - a CSV manifest with a header row and the columns `input` (required), `output`, `preset`,
//!   `formats` (`glb;usdz`, or `"glb,usdz"` quoted); relative paths are relative to the CSV;
//! - a folder of folders: each subfolder (or `.zip` inside it) is an item;
//! - a ZIP of folders: extracted safely into the output folder, then as a folder of folders.
//!
//! The run ends with `batch-report.json` (written atomically) in the output folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::sidecar::read_sidecar;
use crate::{JobRunner, KeyMetrics, QueueError, input_stem, is_zip, layered_settings};
use kiln_core::atomic_file::write_atomically;
use kiln_job::zip_input::{ZipLimits, extract_zip};
use kiln_job::{CancelFlag, JobError, JobSettings};
use kiln_protocol::SettingsOverrides;

/// The report's file name in the batch output folder.
pub const BATCH_REPORT_FILE: &str = "batch-report.json";

/// Where a ZIP of folders is extracted inside the batch output folder.
pub const BATCH_INPUT_DIR: &str = "batch-input";

/// One job to run.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchItem {
    pub input: PathBuf,
    /// The job folder.
    pub output: PathBuf,
    pub settings: JobSettings,
}

/// How an item ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Done,
    /// The input could not give a model (bad photos, bad ZIP, refused by the capture check).
    BadInput,
    Failed,
    /// Stopped by the user; the job folder is resumable.
    Cancelled,
}

/// One line of `batch-report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemResult {
    pub input: PathBuf,
    pub output: PathBuf,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub seconds: f64,
    pub metrics: Option<KeyMetrics>,
}

/// `batch-report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchReport {
    pub source: PathBuf,
    pub done: usize,
    pub failed: usize,
    pub seconds: f64,
    pub items: Vec<ItemResult>,
}

/// The items of `source` (a `.csv`, a `.zip` of folders or a folder of folders). Items without
/// an output get `out/<input name>`; `command` holds the settings of the whole batch, which a
/// folder's `kiln.toml` and a CSV row override ([`layered_settings`]).
pub fn plan_batch(source: &Path, out: &Path, command: &SettingsOverrides) -> Result<Vec<BatchItem>, QueueError> {
    let is_csv = source.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let items = if is_csv {
        items_from_csv(source, out, command)?
    } else if is_zip(source) && source.is_file() {
        items_from_folder(&extract_batch_zip(source, out)?, out, command)?
    } else if source.is_dir() {
        items_from_folder(source, out, command)?
    } else {
        return Err(bad_input(source, "expected a .csv manifest, a folder of photo folders or a .zip of them"));
    };
    if items.is_empty() {
        return Err(bad_input(source, "lists no inputs"));
    }
    Ok(items)
}

/// Extracts a ZIP of folders into `out/batch-input/<zip name>`, replacing an extraction an
/// earlier run left there (Kiln's own copy; the jobs hash their photos, so equal content resumes).
fn extract_batch_zip(zip: &Path, out: &Path) -> Result<PathBuf, QueueError> {
    let dest = out.join(BATCH_INPUT_DIR).join(input_stem(zip));
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(QueueError::io(&dest))?;
    }
    Ok(extract_zip(zip, &dest, &ZipLimits::default()).map_err(JobError::from)?)
}

fn bad_input(path: &Path, problem: impl Into<String>) -> QueueError {
    QueueError::BadInput { path: path.to_path_buf(), problem: problem.into() }
}

/// Each visible subfolder and `.zip` of `folder`, sorted by name.
pub fn items_from_folder(folder: &Path, out: &Path, command: &SettingsOverrides) -> Result<Vec<BatchItem>, QueueError> {
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(QueueError::io(folder))? {
        let path = entry.map_err(QueueError::io(folder))?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path != out && (path.is_dir() || (is_zip(&path) && path.is_file())) {
            inputs.push(path);
        }
    }
    if inputs.is_empty() {
        return Err(bad_input(
            folder,
            "holds no subfolders or .zip files: batch expects one folder (or ZIP) of photos per job",
        ));
    }
    inputs.sort();
    let mut items = Vec::new();
    for input in inputs {
        let sidecar = if input.is_dir() { read_sidecar(&input)? } else { None };
        let settings = layered_settings(command, sidecar.as_ref(), None);
        items.push(BatchItem { output: out.join(input_stem(&input)), input, settings });
    }
    Ok(items)
}

/// The rows of a CSV manifest.
pub fn items_from_csv(csv: &Path, out: &Path, command: &SettingsOverrides) -> Result<Vec<BatchItem>, QueueError> {
    let text = std::fs::read_to_string(csv).map_err(QueueError::io(csv))?;
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut rows = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let (_, header) =
        rows.next().ok_or_else(|| bad_input(csv, "is empty: expected a header row `input,output,preset,formats`"))?;
    let columns = Columns::parse(header).map_err(|problem| bad_input(csv, format!("line 1: {problem}")))?;
    let mut items = Vec::new();
    for (index, line) in rows {
        let fields =
            split_csv_line(line).map_err(|problem| bad_input(csv, format!("line {}: {problem}", index + 1)))?;
        let item = columns
            .item(&fields, base, out, command)
            .map_err(|problem| bad_input(csv, format!("line {}: {problem}", index + 1)))?;
        items.push(item);
    }
    Ok(items)
}

/// Column positions of a CSV header.
struct Columns {
    input: usize,
    output: Option<usize>,
    preset: Option<usize>,
    formats: Option<usize>,
}

impl Columns {
    fn parse(header: &str) -> Result<Columns, String> {
        let names: Vec<String> = split_csv_line(header)?.iter().map(|n| n.trim().to_ascii_lowercase()).collect();
        if let Some(unknown) = names.iter().find(|n| !["input", "output", "preset", "formats"].contains(&n.as_str())) {
            return Err(format!("unknown column {unknown:?}: expected input, output, preset, formats"));
        }
        let find = |name: &str| names.iter().position(|n| n == name);
        let input = find("input").ok_or("the header has no `input` column")?;
        Ok(Columns { input, output: find("output"), preset: find("preset"), formats: find("formats") })
    }

    fn item(
        &self,
        fields: &[String],
        base: &Path,
        out: &Path,
        command: &SettingsOverrides,
    ) -> Result<BatchItem, String> {
        let field = |at: Option<usize>| at.and_then(|i| fields.get(i)).map(|f| f.trim()).filter(|f| !f.is_empty());
        let input = base.join(field(Some(self.input)).ok_or("the input is empty")?);
        let sidecar = if input.is_dir() { read_sidecar(&input).map_err(|e| e.to_string())? } else { None };
        let mut row = SettingsOverrides::default();
        if let Some(preset) = field(self.preset) {
            row.preset = Some(preset.parse()?);
        }
        if let Some(formats) = field(self.formats) {
            let names = formats.split([',', ';', ' ', '|']).filter(|n| !n.is_empty());
            row.formats = Some(names.map(str::parse).collect::<Result<_, _>>()?);
        }
        let settings = layered_settings(command, sidecar.as_ref(), Some(&row));
        let output = field(self.output).map_or_else(|| out.join(input_stem(&input)), |o| base.join(o));
        Ok(BatchItem { input, output, settings })
    }
}

/// The fields of one CSV line: commas separate, double quotes enclose fields that hold commas,
/// `""` inside quotes is a quote.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().ok_or("internal: no field")?;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => quoted = true,
            (false, ',') => fields.push(String::new()),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    Ok(fields)
}

/// Runs every item with `runner`, in order; `on_item` sees each result as it comes. Stops
/// starting new items once `cancel` is set (the cancelled item is reported as such).
pub fn run_batch(
    source: &Path,
    items: &[BatchItem],
    runner: &mut JobRunner,
    cancel: &CancelFlag,
    on_item: &mut dyn FnMut(usize, &ItemResult),
) -> BatchReport {
    let clock = Instant::now();
    let mut results = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        tracing::info!("batch item {}/{}: {}", index + 1, items.len(), item.input.display());
        let start = Instant::now();
        let outcome = runner(&item.input, &item.output, &item.settings, cancel);
        let result = item_result(item, outcome, start.elapsed().as_secs_f64());
        on_item(index, &result);
        results.push(result);
    }
    let done = results.iter().filter(|r| r.status == ItemStatus::Done).count();
    BatchReport {
        source: source.to_path_buf(),
        done,
        failed: results.len() - done,
        seconds: clock.elapsed().as_secs_f64(),
        items: results,
    }
}

fn item_result(item: &BatchItem, outcome: Result<KeyMetrics, JobError>, seconds: f64) -> ItemResult {
    let (status, error, metrics) = match outcome {
        Ok(metrics) => (ItemStatus::Done, None, Some(metrics)),
        Err(error) => {
            let status = match &error {
                JobError::Cancelled(_) => ItemStatus::Cancelled,
                e if e.is_bad_input() => ItemStatus::BadInput,
                _ => ItemStatus::Failed,
            };
            tracing::warn!("{}: {error}", item.input.display());
            (status, Some(error.to_string()), None)
        }
    };
    ItemResult { input: item.input.clone(), output: item.output.clone(), status, error, seconds, metrics }
}

/// Writes `report` as `out/batch-report.json`, atomically; returns its path.
pub fn write_batch_report(out: &Path, report: &BatchReport) -> Result<PathBuf, QueueError> {
    std::fs::create_dir_all(out).map_err(QueueError::io(out))?;
    let path = out.join(BATCH_REPORT_FILE);
    write_atomically(&path, |w| serde_json::to_writer_pretty(w, report).map_err(std::io::Error::other))
        .map_err(QueueError::io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::Format;
    use kiln_protocol::Preset;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-batch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn csv_fields_split_on_commas_outside_quotes() {
        assert_eq!(split_csv_line("a,b , c").unwrap(), ["a", "b ", " c"]);
        assert_eq!(split_csv_line("x,\"glb,usdz\",\"say \"\"hi\"\"\"").unwrap(), ["x", "glb,usdz", "say \"hi\""]);
        assert_eq!(split_csv_line("a,,\r").unwrap(), ["a", "", ""]);
        assert!(split_csv_line("\"open").is_err());
    }

    #[test]
    fn csv_rows_resolve_paths_and_override_settings() {
        let dir = temp("csv");
        std::fs::create_dir_all(dir.join("photos/one")).unwrap();
        std::fs::write(dir.join("photos/one/kiln.toml"), "until = \"poses\"\npreset = \"full\"").unwrap();
        let csv = dir.join("jobs.csv");
        std::fs::write(
            &csv,
            "input,output,preset,formats\nphotos/one,,preview,\"glb,obj\"\n\n/abs/two.zip,jobs/two,,usdz\n",
        )
        .unwrap();
        let command = SettingsOverrides { preset: Some(Preset::Medium), ..SettingsOverrides::default() };
        let items = plan_batch(&csv, Path::new("/out"), &command).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].input, dir.join("photos/one"));
        assert_eq!(items[0].output, Path::new("/out/one"));
        assert_eq!(items[0].settings.preset, Preset::Preview, "the CSV column wins over the sidecar");
        assert_eq!(items[0].settings.until, kiln_job::Stage::Poses, "the sidecar applies where the CSV is silent");
        assert_eq!(items[0].settings.formats, [Format::Glb, Format::Obj]);
        assert_eq!(items[1].input, Path::new("/abs/two.zip"));
        assert_eq!(items[1].output, dir.join("jobs/two"));
        assert_eq!((items[1].settings.preset, items[1].settings.formats.clone()), (Preset::Medium, vec![Format::Usdz]));
    }

    #[test]
    fn csv_mistakes_name_the_line() {
        let dir = temp("csv-bad");
        let csv = dir.join("jobs.csv");
        let command = SettingsOverrides::default();
        for (text, expected) in [
            ("output,preset\nx,preview", "line 1: the header has no `input` column"),
            ("input,colour\nx,red", "line 1: unknown column \"colour\""),
            ("input,preset\nx,preview\ny,ultra", "line 3: unknown preset"),
            ("input,formats\nx,gltf", "line 2: unknown format"),
            ("input\n", "lists no inputs"),
        ] {
            std::fs::write(&csv, text).unwrap();
            let error = plan_batch(&csv, &dir, &command).unwrap_err();
            assert!(error.is_bad_input() && error.to_string().contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_folder_of_folders_gives_one_item_per_subfolder_or_zip() {
        let dir = temp("folders");
        for sub in ["b", "a", ".hidden"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("c.zip"), b"zip").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not an input").unwrap();
        let items = plan_batch(&dir, Path::new("/out"), &SettingsOverrides::default()).unwrap();
        let names: Vec<(PathBuf, PathBuf)> = items.into_iter().map(|i| (i.input, i.output)).collect();
        assert_eq!(
            names,
            [(dir.join("a"), "/out/a".into()), (dir.join("b"), "/out/b".into()), (dir.join("c.zip"), "/out/c".into())]
        );
    }

    #[test]
    fn one_failure_does_not_stop_the_others() {
        let items: Vec<BatchItem> = ["good-1", "bad", "good-2"]
            .iter()
            .map(|n| BatchItem {
                input: n.into(),
                output: format!("/out/{n}").into(),
                settings: JobSettings::for_preset(Preset::Preview),
            })
            .collect();
        let mut runs = Vec::new();
        let mut runner = |input: &Path, _: &Path, _: &JobSettings, _: &CancelFlag| {
            runs.push(input.to_path_buf());
            if input == Path::new("bad") {
                Err(JobError::BadInput { input: input.into(), problem: "no photos".into() })
            } else {
                Ok(KeyMetrics { photos: Some(3), ..KeyMetrics::default() })
            }
        };
        let mut seen = 0;
        let report =
            run_batch(Path::new("list.csv"), &items, &mut runner, &CancelFlag::default(), &mut |_, _| seen += 1);
        assert_eq!(runs.len(), 3);
        assert_eq!(seen, 3);
        assert_eq!((report.done, report.failed), (2, 1));
        let statuses: Vec<ItemStatus> = report.items.iter().map(|i| i.status).collect();
        assert_eq!(statuses, [ItemStatus::Done, ItemStatus::BadInput, ItemStatus::Done]);
        assert!(report.items[1].error.as_deref().is_some_and(|e| e.contains("no photos")));

        let out = temp("report");
        let path = write_batch_report(&out, &report).unwrap();
        let back: BatchReport = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(back, report);
    }
}
