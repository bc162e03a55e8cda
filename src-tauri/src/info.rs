//! The `app_info` command: the app's version, the GPU found, where job folders go, and whether a
//! cloud login is stored (the Add pane's cloud choice follows it). Apart from [`crate::state`] so
//! that the state does not depend on the cloud pane, which depends on it.

use kiln_protocol::app::AppInfo;

use crate::cloud::CloudState;
use crate::error::{CommandResult, internal, lock};
use crate::state::AppState;

/// `offline` while no cloud login is stored for the settings' server (the Add pane's cloud choice
/// follows it).
#[tauri::command]
pub async fn app_info(
    state: tauri::State<'_, AppState>,
    cloud: tauri::State<'_, CloudState>,
) -> CommandResult<AppInfo> {
    let jobs_root = lock(&state.settings)?.output_folder.clone();
    let adapter = tauri::async_runtime::spawn_blocking(crate::gpu::adapter_name)
        .await
        .map_err(|e| internal(format!("looking for a GPU stopped: {e}")))?;
    let offline = !cloud.signed_in().await;
    Ok(AppInfo { version: env!("CARGO_PKG_VERSION").into(), adapter, jobs_root, offline })
}
