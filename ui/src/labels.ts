// Words for the engine's and the app's enum values, in one place. Each table is a
// `Record<Enum, …>`, so the compiler fails when the Rust side (through ./bindings) gains a value
// the UI has no words for.

import type { CloudPhase, Device, Format, JobState, Outcome, Preset, PreviewMode, Stage, Verdict, Where } from "./bindings";

/** Presets in order of increasing detail, with what each is for. */
export const PRESETS: Record<Preset, string> = {
  preview: "Preview: quick look, CPU friendly",
  reduced: "Reduced: web, < 50k triangles",
  medium: "Medium: web and AR, < 100k triangles",
  full: "Full: games, ≤ 250k triangles",
  raw: "Raw: undecimated",
};

export const FORMATS: Record<Format, string> = {
  glb: "GLB (web, Android, games)",
  usdz: "USDZ (Apple AR Quick Look)",
  obj: "OBJ",
  ply: "PLY (splats)",
};

export const WHERE: Record<Where, string> = {
  local: "This machine",
  cloud: "Kiln cloud",
  auto: "Automatic",
};

export const DEVICES: Record<Device, string> = {
  auto: "Automatic (GPU when found)",
  gpu: "GPU",
  cpu: "CPU",
};

export const CLOUD_PHASES: Record<CloudPhase, string> = {
  uploading: "Uploading photos",
  waiting: "Waiting for a cloud GPU",
  running: "In the cloud",
  downloading: "Downloading the results",
};

export const STAGES: Record<Stage, string> = {
  check: "Checking photos",
  poses: "Camera poses",
  train: "Training",
  mesh: "Mesh and texture",
  export: "Export",
};

export const JOB_STATES: Record<JobState, string> = {
  queued: "Queued",
  running: "Running",
  done: "Done",
  failed: "Failed",
  canceled: "Canceled",
  interrupted: "Interrupted",
};

export const OUTCOMES: Record<Outcome, string> = {
  good: "Good: expect a complete model",
  risky: "Risky: a model is likely, with gaps or lower quality",
  will_fail: "Will fail: this set cannot give a model",
};

export const VERDICTS: Record<Verdict, string> = {
  good: "good",
  warn: "warning",
  reject: "left out",
};

export const PREVIEW_MODES: Record<PreviewMode, string> = {
  splats: "Splats",
  mesh: "Mesh",
  wireframe: "Wireframe",
  matcap: "Matcap",
};

/** The keys of a label table, typed: the enum's values in the table's order. */
export function keys<K extends string>(table: Record<K, string>): K[] {
  return Object.keys(table) as K[];
}
