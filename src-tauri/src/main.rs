//! The `kiln-app` binary: the desktop app's window and job runner (see the library's docs).

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    match kiln_app::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kiln-app: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
