//! The UI's TypeScript types (`ui/src/bindings/`) against the Rust types they come from: every type
//! the desktop app exchanges is exported with ts-rs into a scratch folder, with an `index.ts`
//! re-exporting them all, and compared file by file with the committed copies.
//! `KILN_WRITE_BINDINGS=1` writes the committed copies instead (see [`REFRESH`]).
#![cfg(feature = "ts")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_protocol::{app, check, error, event, preset, report, settings};
use ts_rs::{Config, ExportError, TS};

/// The command that rewrites `ui/src/bindings/` from the Rust types.
const REFRESH: &str = "KILN_WRITE_BINDINGS=1 cargo test -p kiln-protocol --features ts --test ts_bindings";

/// The TypeScript type of u64, i64 and the like: serde_json writes them as JSON numbers, which
/// `JSON.parse` reads as `number` (ts-rs's default, `bigint`, is what no JSON parser returns).
const LARGE_INT: &str = "number";

/// Re-exports every binding, so the UI imports `from "./bindings"`.
const INDEX: &str = "index.ts";

/// One exported type: its Rust path and its export (with every type it refers to).
struct Export {
    rust_name: fn() -> &'static str,
    export_all: fn(&Config) -> Result<(), ExportError>,
}

macro_rules! exports {
    ($($ty:ty),* $(,)?) => {
        vec![$(Export { rust_name: std::any::type_name::<$ty>, export_all: <$ty as TS>::export_all }),*]
    };
}

/// Every type that derives `TS`, each named once.
fn exports() -> Vec<Export> {
    exports![
        app::AppInfo,
        app::SourceKind,
        app::Draft,
        app::Rejected,
        app::Added,
        app::Where,
        app::StartOptions,
        app::Estimate,
        app::JobState,
        app::CloudPhase,
        app::JobRow,
        app::JobEventMessage,
        app::TrainPoint,
        app::PreviewMode,
        app::PreviewView,
        app::ExportedFile,
        app::ValidatorLine,
        app::ExportResult,
        app::AppSettings,
        app::WatchSettings,
        app::PickedUp,
        app::WatchedFolder,
        app::CloudStatus,
        app::CloudAccount,
        app::CloudBalance,
        app::CloudLedgerEntry,
        app::CloudLedgerPage,
        app::CloudPack,
        app::CloudCheckout,
        app::CloudKey,
        app::CloudCreatedKey,
        app::AppError,
        check::Verdict,
        check::Outcome,
        check::CheckCode,
        check::Finding,
        check::PhotoCheck,
        check::PhotoMeasures,
        check::SetSummary,
        check::FocalSource,
        check::FocalEstimate,
        check::CheckReport,
        check::ImageMeasures,
        error::ErrorClass,
        event::EventKind,
        event::Phase,
        event::Step,
        event::TrainMetrics,
        event::JobEvent,
        preset::Preset,
        report::ScaleSource,
        report::MatFigures,
        report::Subject,
        report::JobStatus,
        report::StageStatus,
        report::StageReport,
        report::CheckSummary,
        report::PosesSummary,
        report::TrainSummary,
        report::MeshFigures,
        report::OutputFile,
        report::ExportSummary,
        report::StageSummary,
        report::JobMetrics,
        report::ValidatorResult,
        report::JobReport,
        report::ModelVerdict,
        report::FindingCode,
        report::Finding,
        report::ViewQuality,
        report::ModelQuality,
        report::RegionSource,
        report::VerdictReport,
        settings::Stage,
        settings::Device,
        settings::Format,
        settings::JobSettings,
        settings::Resolved,
        settings::SettingsOverrides,
    ]
}

fn bindings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings")
}

/// The `.ts` files of a folder by name, with their text.
fn read_ts_files(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "ts"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&path).unwrap()))
        .collect()
}

/// `index.ts` for these bindings: one type re-export per file, sorted by name.
fn index(bindings: &BTreeMap<String, String>) -> String {
    let mut text = format!(
        "// Every TypeScript type of the desktop app's IPC, generated from the Rust types by\n\
         // engine/protocol/tests/ts_bindings.rs. Do not edit: refresh with\n// {REFRESH}\n"
    );
    for name in bindings.keys() {
        let ty = name.trim_end_matches(".ts");
        text.push_str(&format!("export type {{ {ty} }} from \"./{ty}\";\n"));
    }
    text
}

/// Every binding and `index.ts`, by file name. Call once per process: ts-rs remembers the files
/// it wrote and does not write them again.
fn generate() -> BTreeMap<String, String> {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ts-bindings");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).unwrap();
    }
    let config = Config::new().with_large_int(LARGE_INT).with_out_dir(&scratch);
    let exports = exports();
    for export in &exports {
        (export.export_all)(&config).unwrap_or_else(|e| panic!("exporting {}: {e}", (export.rust_name)()));
    }
    let mut bindings = read_ts_files(&scratch);
    assert_eq!(
        bindings.len(),
        exports.len(),
        "one file per type expected: two types share a TypeScript name (give one a `ts(rename)`), or a type \
         outside the list was exported: {:?}",
        bindings.keys().collect::<Vec<_>>()
    );
    bindings.insert(INDEX.to_string(), index(&bindings));
    bindings
}

/// Makes `dir`'s `.ts` files exactly `bindings`.
fn write(dir: &Path, bindings: &BTreeMap<String, String>) {
    fs::create_dir_all(dir).unwrap();
    for name in read_ts_files(dir).keys().filter(|name| !bindings.contains_key(*name)) {
        fs::remove_file(dir.join(name)).unwrap();
    }
    for (name, text) in bindings {
        fs::write(dir.join(name), text).unwrap();
    }
}

/// What differs between the generated and the committed bindings, one line per file.
fn differences(generated: &BTreeMap<String, String>, committed: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, text) in generated {
        match committed.get(name) {
            None => problems.push(format!("missing: {name}")),
            Some(old) if old != text => problems.push(format!("stale: {name}")),
            Some(_) => {}
        }
    }
    problems
        .extend(committed.keys().filter(|name| !generated.contains_key(*name)).map(|name| format!("extra: {name}")));
    problems
}

#[test]
fn committed_bindings_match_the_rust_types() {
    let generated = generate();
    let dir = bindings_dir();
    if std::env::var("KILN_WRITE_BINDINGS").is_ok_and(|v| v == "1") {
        write(&dir, &generated);
        println!("wrote {} files to {}", generated.len(), dir.display());
        return;
    }
    let problems = differences(&generated, &read_ts_files(&dir));
    assert!(
        problems.is_empty(),
        "ui/src/bindings/ differs from the Rust types:\n  {}\nrefresh with: {REFRESH}",
        problems.join("\n  ")
    );
}

/// The types deriving `TS` in the crate's sources, as `module::Name` (the line after the derive
/// that declares a `pub struct` or `pub enum`).
fn derived_in_sources() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let mut derived = false;
        for line in text.lines() {
            derived |= line.contains("derive(ts_rs::TS)");
            let declared = line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("pub enum "));
            if let Some(rest) = declared.filter(|_| derived) {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                names.push(format!("{module}::{name}"));
                derived = false;
            }
        }
    }
    names.sort();
    names
}

#[test]
fn every_type_deriving_ts_is_exported() {
    let mut listed: Vec<String> =
        exports().iter().map(|export| (export.rust_name)().trim_start_matches("kiln_protocol::").to_string()).collect();
    listed.sort();
    let derived = derived_in_sources();
    assert!(derived.len() > 60, "the source scan found too few types: {derived:?}");
    assert_eq!(listed, derived, "exports() in tests/ts_bindings.rs must list every type that derives TS");
}

#[test]
fn differences_name_each_file() {
    let file = |name: &str, text: &str| (name.to_string(), text.to_string());
    let generated = BTreeMap::from([file("A.ts", "a"), file("B.ts", "b"), file("C.ts", "c")]);
    let committed = BTreeMap::from([file("A.ts", "a"), file("B.ts", "old"), file("Gone.ts", "g")]);
    assert_eq!(differences(&generated, &committed), ["stale: B.ts", "missing: C.ts", "extra: Gone.ts"]);
    assert!(differences(&generated, &generated).is_empty());
}
