// The bridge to the app's Rust side: the only module that calls Tauri's `invoke` and `listen`.
// One typed function per command of the IPC contract (/work/notes/app-ipc.md, mirrored in
// src-tauri/src/ipc.rs); the types are generated from the Rust ones by ts-rs (./bindings), so the
// two sides cannot drift. Binary answers (thumbnails, photos, preview frames) arrive as an
// ArrayBuffer and leave here as object URLs an <img> shows; the caller revokes them.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import { getCurrentWebview } from "@tauri-apps/api/webview";
import type {
  Added,
  AppError,
  AppInfo,
  AppSettings,
  CheckReport,
  CloudCheckout,
  CloudCreatedKey,
  CloudKey,
  CloudLedgerPage,
  CloudPack,
  CloudStatus,
  Estimate,
  ExportResult,
  Format,
  JobEventMessage,
  JobReport,
  JobRow,
  PreviewView,
  StartOptions,
  TrainPoint,
  WatchSettings,
  WatchedFolder,
} from "./bindings";

/** The `job-event` payload: a job layer event and the job it belongs to. */
export type JobEventPayload = JobEventMessage;

/** What a binary command may arrive as: an ArrayBuffer over Tauri's IPC protocol, a number
 * array over its postMessage fallback. */
type Bytes = ArrayBuffer | Uint8Array | number[];

export const appInfo = (): Promise<AppInfo> => invoke("app_info");

export const addSources = (paths: string[]): Promise<Added> => invoke("add_sources", { paths });

export const checkDraft = (draftId: string): Promise<CheckReport> => invoke("check_draft", { draftId });

export async function photoThumbnail(draftId: string, index: number, size: number): Promise<string> {
  return objectUrl(await invoke<Bytes>("photo_thumbnail", { draftId, index, size }), "image/jpeg");
}

export const estimate = (draftId: string, options: StartOptions): Promise<Estimate> =>
  invoke("estimate", { draftId, options });

export const startJob = (draftId: string, options: StartOptions): Promise<JobRow> =>
  invoke("start_job", { draftId, options });

export const listJobs = (): Promise<JobRow[]> => invoke("list_jobs");

export const cancelJob = (jobId: string): Promise<JobRow> => invoke("cancel_job", { jobId });

export const resumeJob = (jobId: string): Promise<JobRow> => invoke("resume_job", { jobId });

export const retryJob = (jobId: string): Promise<JobRow> => invoke("retry_job", { jobId });

export const revealJob = (jobId: string): Promise<null> => invoke("reveal_job", { jobId });
/** Opens the folder an export wrote into in the file manager. */
export const revealExport = (folder: string): Promise<null> => invoke("reveal_export", { folder });

export const deleteJob = (jobId: string): Promise<null> => invoke("delete_job", { jobId });

export const jobReport = (jobId: string): Promise<JobReport | null> => invoke("job_report", { jobId });

export const trainHistory = (jobId: string): Promise<TrainPoint[]> => invoke("train_history", { jobId });

export async function previewFrame(jobId: string, view: PreviewView): Promise<string> {
  return objectUrl(await invoke<Bytes>("preview_frame", { jobId, view }), "image/png");
}

export async function photoImage(jobId: string, index: number, size: number): Promise<string> {
  return objectUrl(await invoke<Bytes>("photo_image", { jobId, index, size }), "image/jpeg");
}

export const exportJob = (jobId: string, formats: Format[], folder: string): Promise<ExportResult> =>
  invoke("export_job", { jobId, formats, folder });

export const getSettings = (): Promise<AppSettings> => invoke("get_settings");

export const setSettings = (settings: AppSettings): Promise<AppSettings> => invoke("set_settings", { settings });

export const listWatched = (): Promise<WatchedFolder[]> => invoke("list_watched");

export const addWatched = (folder: string, settings: WatchSettings): Promise<WatchedFolder> =>
  invoke("add_watched", { folder, settings });

export const removeWatched = (id: string): Promise<null> => invoke("remove_watched", { id });

export const pauseWatched = (id: string, paused: boolean): Promise<WatchedFolder> =>
  invoke("pause_watched", { id, paused });

/** The cloud sign-in, who it is, where it is kept, the balance (no network while signed out). */
export const cloudStatus = (): Promise<CloudStatus> => invoke("cloud_status");

/** Signs in through the system browser; resolves once the browser brought the answer. */
export const cloudLogin = (): Promise<CloudStatus> => invoke("cloud_login");

/** Revokes the login at the server and forgets it. */
export const cloudLogout = (): Promise<CloudStatus> => invoke("cloud_logout");

/** One page of the credit ledger, newest first; `after` is the previous page's `next`. */
export const cloudLedger = (after: string | null, limit: number): Promise<CloudLedgerPage> =>
  invoke("cloud_ledger", { after, limit });

export const cloudPacks = (): Promise<CloudPack[]> => invoke("cloud_packs");

/** Opens Stripe Checkout for `pack` in the browser; `cloud-changed` follows once it is paid. */
export const cloudBuy = (pack: string): Promise<CloudCheckout> => invoke("cloud_buy", { pack });

export const cloudKeys = (): Promise<CloudKey[]> => invoke("cloud_keys");

/** A new API key; its secret is in this answer only. */
export const cloudKeyCreate = (name: string, scopes: string[]): Promise<CloudCreatedKey> =>
  invoke("cloud_key_create", { name, scopes });

export const cloudKeyRevoke = (id: string): Promise<CloudKey> => invoke("cloud_key_revoke", { id });

/** The sign-in or the account changed (signed in or out, a purchase landed). */
export const onCloudChanged = (handler: () => void): Promise<UnlistenFn> => listen("cloud-changed", () => handler());

/** The sign-in page's address once the app waits for the browser. */
export const onCloudLoginUrl = (handler: (url: string) => void): Promise<UnlistenFn> =>
  listen<string>("cloud-login-url", (event) => handler(event.payload));

/** Every watched folder whenever one is added, removed, paused or resumed, or what one picked
 * up, has waiting or saw fail changes. */
export const onWatchedChanged = (handler: (folders: WatchedFolder[]) => void): Promise<UnlistenFn> =>
  listen<WatchedFolder[]>("watched-changed", (event) => handler(event.payload));

/** Live job layer events (stage, fraction, ETA, training metrics, latest preview). */
export const onJobEvent = (handler: (payload: JobEventPayload) => void): Promise<UnlistenFn> =>
  listen<JobEventPayload>("job-event", (event) => handler(event.payload));

/** A job's row whenever its state changes. */
export const onJobChanged = (handler: (row: JobRow) => void): Promise<UnlistenFn> =>
  listen<JobRow>("job-changed", (event) => handler(event.payload));

/** Files dragged onto the window (Tauri's own drag-drop event: the webview gets no paths from
 * HTML5 drops). `hover` says whether a drag is over the window; `drop` gets the dropped paths. */
export function onDragDrop(hover: (over: boolean) => void, drop: (paths: string[]) => void): Promise<UnlistenFn> {
  return getCurrentWebview().onDragDropEvent((event) => {
    const payload = event.payload;
    if (payload.type === "enter" || payload.type === "over") hover(true);
    else if (payload.type === "leave") hover(false);
    else {
      hover(false);
      drop(payload.paths);
    }
  });
}

/** The latest render training wrote of job `jobId` (an object URL of its PNG). */
export async function latestPreview(jobId: string): Promise<string> {
  return objectUrl(await invoke<Bytes>("latest_preview", { jobId }), "image/png");
}

/** The message of a rejected command: its `AppError`, or whatever else it threw, for people. */
export function errorMessage(error: unknown): string {
  if (isAppError(error)) return error.message;
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  return JSON.stringify(error);
}

function isAppError(error: unknown): error is AppError {
  return typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string";
}

function objectUrl(data: Bytes, type: string): string {
  const bytes = data instanceof ArrayBuffer ? data : Uint8Array.from(data).buffer;
  return URL.createObjectURL(new Blob([bytes], { type }));
}
