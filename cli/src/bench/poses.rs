//! `kiln bench poses`: Kiln's structure from motion beside COLMAP on the same photos, in the
//! same run: wall times, their ratio, registered photos and accuracy against reference poses.
//!
//! COLMAP is a benchmark reference only (Debian's `colmap` package, CPU SIFT and matching, since
//! its GPU paths need a display): exhaustive matcher and incremental mapper at their defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiln_dataset::colmap::ColmapModel;
use kiln_dataset::{Dataset, OpenOptions};
use kiln_sfm::PhaseProgress;
use kiln_sfm::eval::{PoseErrors, compare_poses, file_name, poses_by_file_name, registered_poses_by_file_name};
use kiln_sfm::pipeline::{PosesOptions, estimate_poses};
use kiln_vision::model::RigidCv;

use crate::progress::StageBar;

#[derive(clap::Args)]
pub struct BenchPosesArgs {
    /// Folder holding the shared datasets.
    #[arg(long, env = "KILN_DATASETS", default_value = "../shared/datasets")]
    pub datasets: PathBuf,
    /// Dataset folder name under `--datasets`: its `images/` are the photos, its
    /// `transforms_present.json` or `transforms.json` (if any) the reference poses.
    #[arg(long, default_value = "bunny-synth")]
    pub dataset: String,
    /// Use only the first N photos (by name), e.g. to keep COLMAP's exhaustive matching short.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The COLMAP executable.
    #[arg(long, default_value = "colmap")]
    pub colmap: PathBuf,
    /// Run Kiln only.
    #[arg(long)]
    pub no_colmap: bool,
    /// Scratch folder for both tools' outputs (default: a folder under the system temp dir).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One tool's run.
#[derive(serde::Serialize)]
struct Run {
    tool: String,
    wall_seconds: f64,
    registered: usize,
    photos: usize,
    mean_reprojection_px: f64,
    errors: Option<PoseErrors>,
}

pub fn bench_poses(args: &BenchPosesArgs) -> Result<()> {
    let root = args.datasets.join(&args.dataset);
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kiln-bench-poses-{}", std::process::id())));
    let photos = photo_folder(&root.join("images"), args.limit, &work)?;
    let count = std::fs::read_dir(&photos).with_context(|| format!("reading {}", photos.display()))?.count();
    let reference = reference_poses(&root)?;

    let mut runs = vec![run_kiln(&photos, count, reference.as_ref())?];
    if !args.no_colmap {
        runs.push(run_colmap(&args.colmap, &photos, &work.join("colmap"), count, reference.as_ref())?);
    }
    report(args, count, &runs)
}

/// The photos to use: the folder itself, or a folder of links to its first `limit` photos.
fn photo_folder(images: &Path, limit: Option<usize>, work: &Path) -> Result<PathBuf> {
    let Some(limit) = limit else { return Ok(images.to_path_buf()) };
    let mut names: Vec<PathBuf> = std::fs::read_dir(images)
        .with_context(|| format!("reading {}", images.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    names.sort();
    let subset = work.join("photos");
    std::fs::create_dir_all(&subset).with_context(|| format!("creating {}", subset.display()))?;
    for path in names.iter().take(limit) {
        let Some(name) = path.file_name() else { continue };
        let link = subset.join(name);
        if !link.exists() {
            let target = std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
            std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    Ok(subset)
}

fn reference_poses(root: &Path) -> Result<Option<BTreeMap<String, RigidCv>>> {
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    for name in ["transforms_present.json", "transforms.json"] {
        let path = root.join(name);
        if path.is_file() {
            let dataset =
                Dataset::open_with(&path, &options).with_context(|| format!("reference poses {}", path.display()))?;
            return Ok(Some(poses_by_file_name(&dataset.views)));
        }
    }
    Ok(None)
}

fn run_kiln(photos: &Path, count: usize, reference: Option<&BTreeMap<String, RigidCv>>) -> Result<Run> {
    let bar = StageBar::new("kiln", 1);
    let start = Instant::now();
    let progress = &mut |p: &PhaseProgress| bar.update(0, format!("{} {}/{}", p.phase.name(), p.done, p.total));
    let result = estimate_poses(photos, &PosesOptions::default(), progress, &|| false)
        .with_context(|| format!("Kiln poses on {}", photos.display()))?;
    let wall_seconds = start.elapsed().as_secs_f64();
    bar.finish(format!("{wall_seconds:.1} s"));
    let estimated = registered_poses_by_file_name(&result.photos, &result.reconstruction);
    let (mean_reprojection_px, _) = result.reconstruction.mean_reprojection_error();
    Ok(Run {
        tool: "kiln".into(),
        wall_seconds,
        registered: estimated.len(),
        photos: count,
        mean_reprojection_px,
        errors: reference.and_then(|r| compare_poses(&estimated, r)),
    })
}

fn run_colmap(
    colmap: &Path,
    photos: &Path,
    work: &Path,
    count: usize,
    reference: Option<&BTreeMap<String, RigidCv>>,
) -> Result<Run> {
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let sparse = work.join("sparse");
    std::fs::create_dir_all(&sparse).with_context(|| format!("creating {}", sparse.display()))?;
    let database = work.join("database.db");
    let (db, images, out) = (database.as_os_str(), photos.as_os_str(), sparse.as_os_str());
    let steps: [(&str, Vec<&std::ffi::OsStr>); 3] = [
        (
            "feature_extractor",
            vec![
                "--database_path".as_ref(),
                db,
                "--image_path".as_ref(),
                images,
                "--ImageReader.single_camera".as_ref(),
                "1".as_ref(),
                "--SiftExtraction.use_gpu".as_ref(),
                "0".as_ref(),
            ],
        ),
        ("exhaustive_matcher", vec!["--database_path".as_ref(), db, "--SiftMatching.use_gpu".as_ref(), "0".as_ref()]),
        (
            "mapper",
            vec!["--database_path".as_ref(), db, "--image_path".as_ref(), images, "--output_path".as_ref(), out],
        ),
    ];
    let bar = StageBar::new("colmap", steps.len() as u64);
    let start = Instant::now();
    for (index, (step, step_args)) in steps.iter().enumerate() {
        bar.update(index as u64, (*step).to_string());
        let output = Command::new(colmap)
            .arg(step)
            .args(step_args)
            .env("QT_QPA_PLATFORM", "offscreen")
            .output()
            .with_context(|| {
                format!("running {} {step} (install Debian's `colmap` package, or pass --no-colmap)", colmap.display())
            })?;
        if !output.status.success() {
            bail!(
                "colmap {step} failed: {}",
                String::from_utf8_lossy(&output.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    bar.finish(format!("{wall_seconds:.1} s"));
    let model = largest_model(&sparse)?;
    let estimated: BTreeMap<String, RigidCv> = model
        .images
        .iter()
        .map(|image| {
            let [w, x, y, z] = image.qvec;
            let rotation = glam::DMat3::from_quat(glam::DQuat::from_xyzw(x, y, z, w).normalize());
            (file_name(&image.name), RigidCv { rotation, translation: glam::DVec3::from_array(image.tvec) })
        })
        .collect();
    Ok(Run {
        tool: "colmap 3.8 (CPU)".into(),
        wall_seconds,
        registered: estimated.len(),
        photos: count,
        mean_reprojection_px: observation_weighted_error(&model),
        errors: reference.and_then(|r| compare_poses(&estimated, r)),
    })
}

/// COLMAP writes one model folder per connected reconstruction; the one with most images counts.
fn largest_model(sparse: &Path) -> Result<ColmapModel> {
    let mut best: Option<ColmapModel> = None;
    for entry in std::fs::read_dir(sparse).with_context(|| format!("reading {}", sparse.display()))? {
        let dir = entry.with_context(|| format!("reading {}", sparse.display()))?.path();
        if ColmapModel::detect(&dir).is_none() {
            continue;
        }
        let model = ColmapModel::read(&dir)?;
        if best.as_ref().is_none_or(|b| model.images.len() > b.images.len()) {
            best = Some(model);
        }
    }
    best.with_context(|| format!("COLMAP wrote no model under {}", sparse.display()))
}

/// Mean reprojection error over observations (COLMAP stores each point's mean over its track).
fn observation_weighted_error(model: &ColmapModel) -> f64 {
    let (sum, count) = model
        .points3d
        .iter()
        .fold((0.0, 0usize), |(sum, count), p| (sum + p.error * p.track.len() as f64, count + p.track.len()));
    if count == 0 { f64::NAN } else { sum / count as f64 }
}

fn report(args: &BenchPosesArgs, photos: usize, runs: &[Run]) -> Result<()> {
    let ratio = match runs {
        [kiln, colmap, ..] => Some(colmap.wall_seconds / kiln.wall_seconds.max(1e-9)),
        _ => None,
    };
    if args.json {
        let report = serde_json::json!({ "dataset": args.dataset, "photos": photos, "runs": runs, "colmap_over_kiln_wall_time": ratio });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("poses benchmark: {} ({photos} photos)", args.dataset);
    println!(
        "{:<18} {:>9} {:>11} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "tool", "wall s", "registered", "rel.rot °", "rot/C °", "rot/R °", "centre err", "reproj px"
    );
    for run in runs {
        let e = run.errors.as_ref();
        let field =
            |f: fn(&PoseErrors) -> f64, digits: usize| e.map_or("-".to_string(), |e| format!("{:.*}", digits, f(e)));
        println!(
            "{:<18} {:>9.1} {:>11} {:>10} {:>10} {:>10} {:>12} {:>10.3}",
            run.tool,
            run.wall_seconds,
            format!("{}/{}", run.registered, run.photos),
            field(|e| e.median_relative_rotation_deg, 4),
            field(|e| e.median_rotation_deg, 4),
            field(|e| e.median_rotation_orientation_aligned_deg, 4),
            field(|e| e.median_center_error, 6),
            run.mean_reprojection_px,
        );
    }
    println!(
        "medians: rel.rot = pairwise relative rotation; rot/C, rot/R = absolute rotation after aligning centres (Umeyama) or orientations; centre err in reference units"
    );
    if let Some(ratio) = ratio {
        println!("COLMAP wall time / Kiln wall time = {ratio:.2}×");
    }
    Ok(())
}
