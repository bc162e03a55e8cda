//! Reads `tauri.conf.json` (a link to the one at the repository's top) and the capabilities, and
//! embeds what the app needs at run time.

fn main() {
    tauri_build::build();
}
