// The Watched folders pane (`#watched-pane`): add a folder with its settings (what a kiln.toml
// holds: preset, formats, steps …, and the quiet period), see for each what was picked up, what
// waits to become quiet and what failed, pause or resume it, remove it (after a confirmation;
// the folder and its jobs stay). The list follows `watched-changed`.

import type { Format, Preset, SettingsOverrides, WatchSettings, WatchedFolder } from "./bindings";
import { button, byId, checkboxGroup, confirmDialog, fill, h, type CheckboxGroup } from "./dom";
import { formatDuration } from "./format";
import * as ipc from "./ipc";
import { FORMATS, JOB_STATES, PRESETS, STAGES } from "./labels";
import { guard, showError } from "./messages";

/** The quiet period the add form starts with: the Rust side's `WatchSettings::DEFAULT_QUIET_S`
 * (`kiln watch`'s default), long enough for a copy to pause between files without being cut. */
export const DEFAULT_QUIET_S = 10;

/** The preset select's value for "no preset of its own": the app's default preset applies. */
const APP_DEFAULT = "";

export class WatchedPane {
  private readonly list = byId("watched", HTMLUListElement);
  private readonly empty = byId("watched-empty", HTMLElement);
  private readonly form = byId("watch-form", HTMLFormElement);
  private readonly formats: CheckboxGroup<Format>;

  constructor() {
    this.formats = checkboxGroup("Formats (none ticked: the app's)", FORMATS, [], { "data-testid": "watch-formats" });
    byId("watch-formats-slot", HTMLElement).replaceChildren(this.formats.element);
    const preset = byId("watch-preset", HTMLSelectElement);
    preset.append(h("option", { value: APP_DEFAULT }, "The app's default"));
    for (const [key, label] of Object.entries<string>(PRESETS)) preset.append(h("option", { value: key }, label));
    byId("watch-quiet", HTMLInputElement).value = String(DEFAULT_QUIET_S);
    this.wireForm();
  }

  /** Shows the folders as the app keeps them. */
  async load(): Promise<void> {
    const folders = await guard("Could not read the watched folders", () => ipc.listWatched());
    if (folders) this.show(folders);
  }

  /** Shows `folders`, replacing what was shown (the `watched-changed` payload). */
  show(folders: WatchedFolder[]): void {
    fill(this.list, ...folders.map((folder) => this.card(folder)));
    this.empty.hidden = folders.length > 0;
  }

  private wireForm(): void {
    const toggle = byId("watch-add", HTMLButtonElement);
    const path = byId("watch-path", HTMLInputElement);
    toggle.addEventListener("click", () => {
      this.form.hidden = !this.form.hidden;
      toggle.setAttribute("aria-expanded", String(!this.form.hidden));
      if (!this.form.hidden) path.focus();
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const folder = path.value.trim();
      if (folder) void this.add(folder);
    });
  }

  private async add(folder: string): Promise<void> {
    const submit = byId("watch-submit", HTMLButtonElement);
    submit.disabled = true;
    try {
      await ipc.addWatched(folder, this.settings());
      byId("watch-path", HTMLInputElement).value = "";
      await this.load();
    } catch (error) {
      showError("Could not watch the folder", error);
    } finally {
      submit.disabled = false;
    }
  }

  /** The add form's settings: only what the user set, so the rest follows the app's settings. */
  private settings(): WatchSettings {
    const overrides: SettingsOverrides = {};
    const preset = byId("watch-preset", HTMLSelectElement).value;
    if (preset !== APP_DEFAULT) overrides.preset = preset as Preset;
    const formats = this.formats.values();
    if (formats.length > 0) overrides.formats = formats;
    const steps = byId("watch-steps", HTMLInputElement).valueAsNumber;
    if (Number.isFinite(steps)) overrides.train_steps = steps;
    const quiet = byId("watch-quiet", HTMLInputElement).valueAsNumber;
    return { overrides, quiet_s: Number.isFinite(quiet) ? quiet : DEFAULT_QUIET_S };
  }

  private card(folder: WatchedFolder): HTMLLIElement {
    const toggle = folder.paused ? "resume" : "pause";
    return h(
      "li",
      { class: "card", "data-watched-id": folder.id, "data-paused": String(folder.paused) },
      h(
        "div",
        { class: "row" },
        h("strong", { class: "path grow", title: folder.folder }, folder.folder),
        folder.paused && h("span", { class: "badge" }, "Paused"),
      ),
      h("p", { class: "muted small", "data-testid": "watch-settings" }, describeSettings(folder.settings).join(" · ")),
      folder.problem && h("p", { class: "error-text", "data-testid": "watch-problem" }, folder.problem.message),
      h(
        "p",
        { class: "small" },
        count("picked-up", folder.picked_up.length, "picked up"),
        " · ",
        count("waiting", folder.waiting.length, "waiting"),
        " · ",
        count("failed", folder.failed.length, "failed"),
      ),
      details(
        "Picked up",
        "picked-up-list",
        folder.picked_up.map((p) => h("li", { "data-job-id": p.job_id }, `${name(p.input)} — ${JOB_STATES[p.state]}`)),
      ),
      details(
        "Waiting",
        "waiting-list",
        folder.waiting.map((path) => h("li", {}, name(path))),
      ),
      details(
        "Failed",
        "failed-list",
        folder.failed.map((f) => h("li", { class: "error-text" }, `${name(f.path)}: ${f.error.message}`)),
      ),
      h(
        "div",
        { class: "row" },
        h("span", { class: "spacer" }),
        button(folder.paused ? "Resume" : "Pause", { "data-action": toggle }, () => void this.pause(folder)),
        button("Remove", { class: "quiet danger", "data-action": "remove" }, () => void this.remove(folder)),
      ),
    );
  }

  private async pause(folder: WatchedFolder): Promise<void> {
    const context = folder.paused ? "Could not resume watching" : "Could not pause watching";
    if (await guard(context, () => ipc.pauseWatched(folder.id, !folder.paused))) await this.load();
  }

  private async remove(folder: WatchedFolder): Promise<void> {
    const yes = await confirmDialog(
      "Stop watching this folder?",
      `${folder.folder} is no longer watched. The folder, its photos and the jobs made from them are not touched.`,
      "Stop watching",
    );
    if (!yes) return;
    try {
      await ipc.removeWatched(folder.id);
      await this.load();
    } catch (error) {
      showError("Could not stop watching the folder", error);
    }
  }
}

/** A folder's settings in words: "Preview preset · GLB · 300 steps · quiet 10 s". What is not
 * set follows the app's settings (and each input's kiln.toml overrides it). */
export function describeSettings(settings: WatchSettings): string[] {
  const o = settings.overrides;
  const words: (string | false | undefined)[] = [
    o.preset ? `${PRESETS[o.preset].split(":")[0]} preset` : "the app's preset",
    o.formats && o.formats.map((f) => f.toUpperCase()).join(", "),
    o.device && `on ${o.device}`,
    o.train_steps !== undefined && `${o.train_steps} steps`,
    o.max_side !== undefined && `photos at ${o.max_side} px`,
    o.max_triangles !== undefined && `≤ ${o.max_triangles} triangles`,
    o.texture_size !== undefined && `${o.texture_size} px texture`,
    o.size_mm !== undefined && `${o.size_mm} mm long`,
    o.until && `until ${STAGES[o.until].toLowerCase()}`,
    o.keep_all && "keep every photo",
    `quiet ${formatDuration(settings.quiet_s)}`,
  ];
  return words.filter((w): w is string => typeof w === "string" && w !== "");
}

function count(what: string, n: number, label: string): HTMLElement {
  return h("span", { "data-testid": `${what}-count` }, `${n} ${label}`);
}

function details(summary: string, testid: string, items: HTMLElement[]): HTMLElement | null {
  if (items.length === 0) return null;
  return h("details", {}, h("summary", {}, summary), h("ul", { "data-testid": testid }, ...items));
}

/** The last part of a path: the input's name. */
function name(path: string): string {
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}
