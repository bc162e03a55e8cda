//! Where tests find their data, spelled once for every crate's tests (a dev-dependency only):
//! the shared datasets (`$KILN_DATASETS`, else `../shared/datasets` beside the repository), the
//! repository's own fixture (`engine/fixtures/bunny-mini`), and a skip that says so loudly when
//! a dataset is absent, so a fresh clone's test run passes and tells what it did not test.

use std::path::{Path, PathBuf};

/// The repository's root (this crate lives in `engine/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$KILN_DATASETS`, else `../shared/datasets` beside the repository.
pub fn datasets() -> PathBuf {
    std::env::var_os("KILN_DATASETS").map_or_else(|| workspace_root().join("../shared/datasets"), PathBuf::from)
}

/// The shared dataset folder `name` (e.g. `fox`, or `bunny-synth/images`), or `None` after
/// printing `SKIPPED: …` when it is absent.
pub fn dataset(name: &str) -> Option<PathBuf> {
    let dir = datasets().join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: dataset {name} not found at {} (set KILN_DATASETS)", dir.display());
        None
    }
}

/// The bunny-mini fixture shipped in the repository: 12 small renders with masks, exact poses
/// (`transforms.json`) and the ground-truth mesh.
pub fn bunny_mini() -> PathBuf {
    workspace_root().join("engine/fixtures/bunny-mini")
}
