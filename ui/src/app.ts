// Wires the panes to each other and to the Rust side: reads the app's info and settings, shows
// the queue, listens to job events, file drops and unhandled failures, and exposes
// `window.kiln.addSources` (the drop handler's own code path, for the WebDriver test, which
// cannot drop files).

import { AddPane } from "./add";
import type { AppInfo, AppSettings, JobReport, JobRow } from "./bindings";
import { CloudPane } from "./cloud";
import { byId } from "./dom";
import { ExportPane } from "./export";
import * as ipc from "./ipc";
import { guard, showError } from "./messages";
import { PreviewPane } from "./preview";
import { QueuePane } from "./queue";
import { SettingsDialog } from "./settings";
import { WatchedPane } from "./watched";

/** What the page offers scripts (the end-to-end test). */
export interface KilnApi {
  addSources: (paths: string[]) => Promise<void>;
}

declare global {
  interface Window {
    kiln?: KilnApi;
  }
}

/** What the UI starts from when the Rust side cannot give its settings: the engine's defaults
 * (medium preset, GLB and USDZ), no folder chosen yet. */
const FALLBACK_SETTINGS: AppSettings = {
  device: "auto",
  preset: "medium",
  formats: ["glb", "usdz"],
  output_folder: "",
  cloud_url: "",
  log_folder: "",
};

/** Starts the UI on the page of index.html. Resolves once the queue is shown and the event
 * listeners are in place. */
export async function startApp(): Promise<void> {
  window.addEventListener("unhandledrejection", (event) => showError("Unexpected error", event.reason));
  let info: AppInfo | null = null;
  let settings = FALLBACK_SETTINGS;
  const preview = new PreviewPane();
  const exporter = new ExportPane({ settings: () => settings });
  const queue = new QueuePane({
    selected: (row: JobRow | null, report: JobReport | null) => {
      preview.setJob(row, report?.metrics.poses?.photos ?? null);
      exporter.setJob(row, report);
    },
  });
  const add = new AddPane({
    settings: () => settings,
    offline: () => info?.offline ?? true,
    started: (row) => {
      queue.upsert(row);
      queue.select(row.id);
    },
  });
  const watched = new WatchedPane();
  // After a sign-in or out the app's info says whether the cloud is in reach; the Add pane follows.
  const cloudChanged = async () => {
    const fresh = await guard("Could not read the app's state", ipc.appInfo);
    if (!fresh) return;
    info = fresh;
    add.cloudChanged(fresh.offline);
  };
  const cloud = new CloudPane({ onChanged: () => void cloudChanged() });
  new SettingsDialog({
    info: () => info,
    settings: () => settings,
    saved: (stored) => {
      const otherServer = stored.cloud_url !== settings.cloud_url;
      settings = stored;
      exporter.settingsChanged(stored);
      // Another cloud server: its sign-in (or none) is what the pane and the Add pane show now.
      if (otherServer) {
        void cloud.load();
        void cloudChanged();
      }
    },
  });
  window.kiln = { addSources: (paths) => add.addSources(paths) };

  const [appInfo, stored] = await Promise.all([
    guard("Could not read the app's state", ipc.appInfo),
    guard("Could not read the settings", ipc.getSettings),
  ]);
  info = appInfo ?? null;
  if (stored) {
    settings = stored;
    exporter.settingsChanged(stored);
  }
  showDevice(info);
  await Promise.all([
    guard("Could not follow the jobs", () => ipc.onJobEvent((payload) => queue.applyEvent(payload))),
    guard("Could not follow the jobs", () => ipc.onJobChanged((row) => queue.upsert(row))),
    guard("Dropping files will not work", () => ipc.onDragDrop(hoverDropZone, (paths) => void add.addSources(paths))),
    guard("Could not follow the watched folders", () => ipc.onWatchedChanged((folders) => watched.show(folders))),
    guard("Could not follow the cloud account", () =>
      ipc.onCloudChanged(() => {
        void cloud.changed();
        void cloudChanged();
      }),
    ),
    guard("Could not follow the cloud sign-in", () => ipc.onCloudLoginUrl((url) => cloud.loginOpened(url))),
  ]);
  await Promise.all([queue.load(), watched.load(), cloud.load()]);
}

function hoverDropZone(over: boolean): void {
  byId("drop-zone", HTMLElement).classList.toggle("hover", over);
}

function showDevice(info: AppInfo | null): void {
  const device = byId("device-info", HTMLElement);
  if (!info) return;
  device.textContent = `${info.adapter ? `GPU: ${info.adapter}` : "CPU only"} · v${info.version}`;
  device.title = `Jobs in ${info.jobs_root}`;
}
