// Test support for the UI tests: the real index.html in happy-dom, a mocked Rust side that
// records every command it is sent (`@tauri-apps/api/mocks`), events emitted as the Rust side
// would emit them, and fixtures shaped by the generated binding types.

import { emit } from "@tauri-apps/api/event";
import { clearMocks, mockConvertFileSrc, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { vi } from "vitest";
import page from "../../index.html?raw";
import { startApp } from "../app";
import type { AppInfo, AppSettings, CheckReport, CloudStatus, Draft, JobReport, JobRow, PhotoCheck } from "../bindings";

/** One command the UI sent: its name and arguments. */
export interface Call {
  cmd: string;
  args: Record<string, unknown>;
}

export type Handler = (args: Record<string, unknown>) => unknown;

export const INFO: AppInfo = { version: "0.1.0", adapter: null, jobs_root: "/home/me/Kiln/jobs", offline: true };

export const SETTINGS: AppSettings = {
  device: "auto",
  preset: "preview",
  formats: ["glb"],
  output_folder: "/home/me/Kiln/exports",
  cloud_url: "https://kiln.example",
  log_folder: "/home/me/.local/state/kiln",
};

/** The cloud pane of an app that is not signed in. */
export const SIGNED_OUT: CloudStatus = {
  server: "https://kiln.example",
  account: null,
  kept_in: "the system keyring (Secret Service)",
  keyring_problem: null,
};

/** The commands every app start sends, answered as an empty, fresh app would. */
const DEFAULTS: Record<string, Handler> = {
  app_info: () => INFO,
  cloud_status: () => SIGNED_OUT,
  get_settings: () => SETTINGS,
  list_jobs: () => [],
  list_watched: () => [],
  train_history: () => [],
  job_report: () => null,
  photo_thumbnail: () => bytes(),
  photo_image: () => bytes(),
  preview_frame: () => bytes(),
  estimate: () => ({ seconds: 240, credits: null }),
};

/** The mocked Rust side: `calls` records each command, in order. */
export interface Backend {
  calls: Call[];
  /** The calls of one command. */
  of: (cmd: string) => Call[];
}

/** Loads index.html's body, mocks the Rust side with `handlers` over the defaults, starts the app. */
export async function start(handlers: Record<string, Handler> = {}): Promise<{ backend: Backend }> {
  clearMocks();
  const body = /<body>([\s\S]*)<\/body>/.exec(page)?.[1];
  if (body === undefined) throw new Error("index.html has no body");
  document.body.innerHTML = body;
  const calls: Call[] = [];
  const all = { ...DEFAULTS, ...handlers };
  mockWindows("main");
  mockConvertFileSrc("linux");
  mockIPC(
    (cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      const handler = all[cmd];
      if (!handler) return Promise.reject({ class: "internal", message: `no mock for ${cmd}` });
      return handler(args);
    },
    { shouldMockEvents: true },
  );
  await startApp();
  return { backend: { calls, of: (cmd) => calls.filter((c) => c.cmd === cmd) } };
}

/** Emits an event as the Rust side would. */
export async function fire(event: string, payload: unknown): Promise<void> {
  await emit(event, payload);
}

/** A small binary answer (a stand-in JPEG or PNG: the UI only wraps it in an object URL). */
export function bytes(): ArrayBuffer {
  return new Uint8Array([0x89, 0x50, 0x4e, 0x47]).buffer;
}

/** A promise the test resolves later: a command that is still running. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Waits until `check` passes (the UI updates after promises and events settle). */
export async function until(check: () => void): Promise<void> {
  await vi.waitFor(check, { timeout: 2000, interval: 5 });
}

/** The one element matching `selector`, or a failed test. */
export function one<T extends Element = HTMLElement>(selector: string, root: ParentNode = document): T {
  const found = root.querySelector<T>(selector);
  if (!found) throw new Error(`nothing matches ${selector}`);
  return found;
}

export function draft(id = "d1", name = "shoe"): Draft {
  return { id, source: `/home/me/photos/${name}`, name, kind: "folder", photos: 3 };
}

export function photo(name: string, verdict: PhotoCheck["verdict"], findings: PhotoCheck["findings"] = []): PhotoCheck {
  return { path: `/home/me/photos/shoe/${name}`, verdict, findings, measures: null };
}

export function checkReport(photos: PhotoCheck[], outcome: CheckReport["outcome"], advice: string[]): CheckReport {
  return {
    input: "/home/me/photos/shoe",
    photos,
    outcome,
    advice,
    summary: {
      photos: photos.length,
      usable: photos.filter((p) => p.verdict !== "reject").length,
      ignored_files: [],
      cameras: [["Canon EOS", photos.length]],
      pairs_matched: 3,
      pairs_overlapping: 2,
      components: [],
      loop_closed: true,
      largest_gap_deg: 40,
      largest_gap_range_deg: null,
      coverage_unknown: null,
      focal_lengths: [],
      seconds: 1.5,
    },
  };
}

export function jobRow(id: string, state: JobRow["state"], fields: Partial<JobRow> = {}): JobRow {
  return {
    id,
    name: `job ${id}`,
    source: `/home/me/photos/${id}`,
    job_dir: `/home/me/Kiln/jobs/${id}`,
    where: "local",
    preset: "preview",
    state,
    stage: null,
    stage_fraction: 0,
    job_fraction: 0,
    eta_s: null,
    elapsed_s: 0,
    error: null,
    created_at: "2026-01-01T10:00:00Z",
    resumed_from_step: null,
    cloud_phase: null,
    ...fields,
  };
}

export function jobReport(jobId: string): JobReport {
  return {
    engine_version: "0.1.0",
    input: `/home/me/photos/${jobId}`,
    photos_dir: `/home/me/photos/${jobId}`,
    job_dir: `/home/me/Kiln/jobs/${jobId}`,
    status: "finished",
    error: null,
    stages: [
      { stage: "check", status: "finished", seconds: 2, message: "24 photos" },
      { stage: "poses", status: "finished", seconds: 30, message: "22/24 photos registered" },
      { stage: "train", status: "finished", seconds: 120, message: "held-out PSNR 24.31 dB" },
      { stage: "mesh", status: "finished", seconds: 40, message: "23000 triangles" },
      { stage: "export", status: "finished", seconds: 3, message: "2 files" },
    ],
    device: "cpu (2 threads)",
    metrics: {
      check: null,
      poses: { photos: 24, registered_images: 22, mean_reprojection_error_px: 0.6, points: 5000 },
      train: {
        psnr: 24.31,
        ssim: 0.8,
        splats: 52000,
        steps: 1500,
        train_views: 21,
        test_views: 3,
        device: "cpu",
        resumed_from_step: null,
      },
      mesh: {
        triangles: 23456,
        vertices: 12000,
        texture_size: 1024,
        size_m: [0.3, 0.2, 0.1],
        scale_source: "unknown",
        subject: "object",
        observed_fraction: 0.9,
        holes_left_open: 0,
      },
      quality: null,
      export: {
        files: [
          { path: `/home/me/Kiln/jobs/${jobId}/export/model.glb`, bytes: 1_400_000 },
          { path: `/home/me/Kiln/jobs/${jobId}/export/model.usdz`, bytes: 2_100_000 },
        ],
      },
    },
    validators: [
      {
        file: `/home/me/Kiln/jobs/${jobId}/export/model.glb`,
        validator: "gltf-validator",
        passed: true,
        detail: "0 errors",
      },
    ],
    verdict: "good",
    findings: [],
    seconds: 195,
  };
}
