//! `kiln batch`: many inputs, each its own job, one after the other; a failing item does not stop
//! the others. The items come from
//! - a CSV manifest (read by the `csv` crate: quoted cells may hold commas, quotes as `""` and
//!   line breaks) whose header row names its columns: `input` (required: a photo folder or ZIP),
//!   `output` (the job folder; default `<out>/<input name>`), and any setting of the protocol's
//!   [`SettingsOverrides`] by its field name, as in `kiln.toml`: `preset`, `formats`, `device`,
//!   `keep_all`, `train_steps`, `max_side`, `checkpoint_every`, `max_triangles`,
//!   `texture_size`, `seed`, `size_mm`, `until`. Relative paths are relative to the CSV; an
//!   empty cell sets nothing; a list (`formats`) is written in one cell with its items separated
//!   by `;` (`glb;usdz`) or by commas in a quoted cell (`"glb,usdz"`). An unknown column is an
//!   error naming it, a bad value one naming its line and column, and both name the CSV last;
//! - a folder of folders: each subfolder (or `.zip` inside it) is an item;
//! - a ZIP of folders: extracted safely into the output folder, then as a folder of folders.
//!
//! An item's settings are layered by [`layered_settings`], the most specific winning: its CSV
//! row's cells over its folder's `kiln.toml` over the settings the batch was started with.
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
use kiln_protocol::csv_cell::{cell_overrides, settings_fields};

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
    } else if !source.exists() {
        return Err(bad_input(source, "no such manifest, folder or ZIP"));
    } else {
        return Err(bad_input(source, "not a .csv manifest, a folder of photo folders or a .zip of them"));
    };
    if items.is_empty() {
        return Err(bad_input(source, "the batch lists no inputs"));
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
            "no subfolders or .zip files in the folder: a batch takes one folder (or ZIP) of photos per job",
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

/// The rows of a CSV manifest (see the module docs), in order; blank rows are skipped.
pub fn items_from_csv(csv: &Path, out: &Path, command: &SettingsOverrides) -> Result<Vec<BatchItem>, QueueError> {
    let file = std::fs::File::open(csv).map_err(QueueError::io(csv))?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(file);
    let header = reader.headers().map_err(|error| csv_error(csv, error))?;
    if header.iter().all(str::is_empty) {
        return Err(bad_input(csv, "the CSV is empty: expected a header row with an `input` column"));
    }
    let columns = Columns::parse(header).map_err(|problem| bad_input(csv, format!("{problem} (line 1)")))?;
    let mut items = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|error| csv_error(csv, error))?;
        let line = row.position().map_or(0, csv::Position::line);
        if let Some(item) = columns.item(&row, line, csv, out, command)? {
            items.push(item);
        }
    }
    Ok(items)
}

/// A CSV reading error as the queue's: I/O as such, the rest as a bad manifest with its line.
fn csv_error(path: &Path, error: csv::Error) -> QueueError {
    let text = error.to_string();
    let line = error.position().map_or_else(String::new, |p| format!(" (line {})", p.line()));
    match error.into_kind() {
        csv::ErrorKind::Io(source) => QueueError::Io { path: path.to_path_buf(), source },
        csv::ErrorKind::Utf8 { err, .. } => bad_input(path, format!("the CSV is not UTF-8 text: {err}{line}")),
        _ => bad_input(path, text),
    }
}

/// The header of a CSV manifest: where `input` and `output` are, and the setting each other
/// column holds.
struct Columns {
    input: usize,
    output: Option<usize>,
    /// `(position, field name)` of each column that is a setting.
    settings: Vec<(usize, String)>,
    count: usize,
}

impl Columns {
    fn parse(header: &csv::StringRecord) -> Result<Columns, String> {
        let fields = settings_fields();
        let names: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
        let (mut input, mut output, mut settings) = (None, None, Vec::new());
        for (at, name) in names.iter().enumerate() {
            if names[..at].contains(name) {
                return Err(format!("the column `{name}` appears twice (column {})", at + 1));
            }
            match name.as_str() {
                "input" => input = Some(at),
                "output" => output = Some(at),
                setting if fields.contains(&setting) => settings.push((at, name.clone())),
                _ => {
                    return Err(format!(
                        "unknown column `{name}` (column {}): expected input, output or a setting ({})",
                        at + 1,
                        fields.join(", ")
                    ));
                }
            }
        }
        let input = input.ok_or("the header has no `input` column")?;
        Ok(Columns { input, output, settings, count: names.len() })
    }

    /// The item of the row of `csv` that starts on `line`, or `None` for a row of empty cells.
    fn item(
        &self,
        row: &csv::StringRecord,
        line: u64,
        csv: &Path,
        out: &Path,
        command: &SettingsOverrides,
    ) -> Result<Option<BatchItem>, QueueError> {
        if row.iter().all(str::is_empty) {
            return Ok(None);
        }
        if row.len() > self.count {
            let problem = format!("the row has {} cells, the header {} (line {line})", row.len(), self.count);
            return Err(bad_input(csv, problem));
        }
        let cell = |at: usize| row.get(at).unwrap_or_default();
        if cell(self.input).is_empty() {
            return Err(bad_input(csv, format!("the input is empty (line {line}, column {})", self.input + 1)));
        }
        let mut overrides = SettingsOverrides::default();
        for (at, name) in &self.settings {
            if !cell(*at).is_empty() {
                let set = cell_overrides(name, cell(*at))
                    .map_err(|error| bad_input(csv, format!("{name}: {error} (line {line}, column {})", at + 1)))?;
                overrides = set.over(&overrides);
            }
        }
        overrides.validate().map_err(|problem| bad_input(csv, format!("{problem} (line {line})")))?;
        let base = csv.parent().unwrap_or(Path::new("."));
        let input = base.join(cell(self.input));
        let sidecar = if input.is_dir() { read_sidecar(&input)? } else { None };
        let settings = layered_settings(command, sidecar.as_ref(), Some(&overrides));
        let output = self.output.map(cell).filter(|o| !o.is_empty());
        let output = output.map_or_else(|| out.join(input_stem(&input)), |o| base.join(o));
        Ok(Some(BatchItem { input, output, settings }))
    }
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
            tracing::warn!(input = %item.input.display(), "{error}");
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
    use kiln_protocol::{Device, Format, Preset, Stage};

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-batch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn csv_rows_resolve_paths_and_override_settings() {
        let dir = temp("csv");
        std::fs::create_dir_all(dir.join("photos/one")).unwrap();
        std::fs::write(dir.join("photos/one/kiln.toml"), "until = \"poses\"\npreset = \"full\"\nseed = 5").unwrap();
        let csv = dir.join("jobs.csv");
        std::fs::write(
            &csv,
            "Input, output ,preset,formats,max_side,train_steps,seed,size_mm,keep_all,device\n\
             photos/one,,preview,\"glb,obj\",640,,,,,\n\
             \n\
             /abs/two.zip,jobs/two,,usdz,,1500,7,142.5,true,cpu\n\
             \"shoots/a, b\",\"jobs/two\nlines\",raw,ply;glb\n",
        )
        .unwrap();
        let command = SettingsOverrides {
            preset: Some(Preset::Medium),
            until: Some(Stage::Mesh),
            ..SettingsOverrides::default()
        };
        let items = plan_batch(&csv, Path::new("/out"), &command).unwrap();
        assert_eq!(items.len(), 3);
        let one = &items[0];
        assert_eq!((one.input.clone(), one.output.clone()), (dir.join("photos/one"), PathBuf::from("/out/one")));
        assert_eq!(one.settings.preset, Preset::Preview, "the CSV cell wins over the sidecar");
        assert_eq!(one.settings.until, Stage::Poses, "the sidecar wins over the command where the CSV is silent");
        assert_eq!((one.settings.seed, one.settings.max_side), (5, Some(640)));
        assert_eq!(one.settings.formats, [Format::Glb, Format::Obj]);
        let two = &items[1];
        assert_eq!((two.input.clone(), two.output.clone()), (PathBuf::from("/abs/two.zip"), dir.join("jobs/two")));
        assert_eq!((two.settings.preset, two.settings.until), (Preset::Medium, Stage::Mesh), "the command's");
        assert_eq!(two.settings.formats, [Format::Usdz]);
        assert_eq!((two.settings.train_steps, two.settings.seed, two.settings.size_mm), (Some(1500), 7, Some(142.5)));
        assert_eq!((two.settings.keep_all, two.settings.device), (true, Device::Cpu));
        let three = &items[2];
        assert_eq!(three.input, dir.join("shoots/a, b"), "a quoted comma");
        assert_eq!(three.output, dir.join("jobs/two\nlines"), "a quoted line break");
        assert_eq!(
            (three.settings.preset, three.settings.formats.clone()),
            (Preset::Raw, vec![Format::Ply, Format::Glb])
        );
        assert_eq!(three.settings.checkpoint_every, Preset::Raw.checkpoint_every());
    }

    #[test]
    fn csv_mistakes_name_the_problem_the_line_and_column_and_the_file_last() {
        let dir = temp("csv-bad");
        let csv = dir.join("jobs.csv");
        let command = SettingsOverrides::default();
        for (text, expected) in [
            ("output,preset\nx,preview", "the header has no `input` column (line 1)"),
            (
                "input,colour\nx,red",
                "unknown column `colour` (column 2): expected input, output or a setting (preset, ",
            ),
            ("input,stepz\nx,3", "unknown column `stepz` (column 2)"),
            ("input,preset,Preset\nx,raw,full", "the column `preset` appears twice (column 3)"),
            ("input,preset\nx,preview\ny,ultra", "preset: unknown variant `ultra`, expected one of `preview`"),
            ("input,preset\n\"x\ny\",preview\nz,ultra", "(line 4, column 2)"),
            ("input,formats\nx,gltf", "formats: unknown variant `gltf`, expected one of `glb`"),
            ("input,formats\nx,;", "formats must name at least one format (line 2)"),
            ("input,max_side\nx,big", "max_side: expected a whole number, found \"big\" (line 2, column 2)"),
            ("input,max_side\nx,0", "max_side must be positive (line 2)"),
            ("input,keep_all\nx,1", "keep_all: expected true or false, found \"1\" (line 2, column 2)"),
            ("input,output\nx,y,z", "the row has 3 cells, the header 2 (line 2)"),
            ("input,preset\n,full", "the input is empty (line 2, column 1)"),
            ("input\n", "lists no inputs"),
            ("", "the CSV is empty"),
        ] {
            std::fs::write(&csv, text).unwrap();
            let error = plan_batch(&csv, &dir, &command).unwrap_err();
            let message = error.to_string();
            assert!(error.is_bad_input() && message.contains(expected), "{text:?}: {message}");
            assert!(message.ends_with(&format!(": {}", csv.display())), "the file last: {message}");
        }
        std::fs::write(&csv, b"input\nph\xffotos\n").unwrap();
        let error = plan_batch(&csv, &dir, &command).unwrap_err().to_string();
        assert!(error.starts_with("the CSV is not UTF-8 text") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn a_broken_sidecar_of_a_csv_item_names_the_sidecar() {
        let dir = temp("csv-sidecar");
        std::fs::create_dir_all(dir.join("one")).unwrap();
        std::fs::write(dir.join("one/kiln.toml"), "qualty = 3").unwrap();
        let csv = dir.join("jobs.csv");
        std::fs::write(&csv, "input\none\n").unwrap();
        let error = plan_batch(&csv, &dir, &SettingsOverrides::default()).unwrap_err().to_string();
        assert!(error.starts_with("unknown field `qualty`"), "{error}");
        assert!(error.ends_with(&dir.join("one/kiln.toml").display().to_string()), "{error}");
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

        let empty = dir.join("a");
        let error = plan_batch(&empty, Path::new("/out"), &SettingsOverrides::default()).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "no subfolders or .zip files in the folder: a batch takes one folder (or ZIP) of photos per job: {}",
                empty.display()
            )
        );
        let missing = dir.join("missing");
        let error = plan_batch(&missing, Path::new("/out"), &SettingsOverrides::default()).unwrap_err();
        assert!(error.is_bad_input());
        assert_eq!(error.to_string(), format!("no such manifest, folder or ZIP: {}", missing.display()));
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
