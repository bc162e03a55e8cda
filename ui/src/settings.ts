// The Settings dialog (`#settings`): the device local jobs train on (with the adapter wgpu found),
// the default preset and formats, the output folder, the cloud server's URL and the log folder.

import type { AppInfo, AppSettings, Device, Format, Preset } from "./bindings";
import { byId, checkboxGroup, h, selectBox, type CheckboxGroup } from "./dom";
import * as ipc from "./ipc";
import { DEVICES, FORMATS, PRESETS } from "./labels";
import { showError } from "./messages";

export interface SettingsDeps {
  info: () => AppInfo | null;
  settings: () => AppSettings;
  saved: (settings: AppSettings) => void;
}

export class SettingsDialog {
  private readonly dialog = byId("settings", HTMLDialogElement);

  constructor(private readonly deps: SettingsDeps) {
    byId("open-settings", HTMLButtonElement).addEventListener("click", () => this.open());
  }

  open(): void {
    const current = this.deps.settings();
    const adapter = this.deps.info()?.adapter;
    const device = selectBox<Device>(DEVICES, current.device, { id: "settings-device" });
    const preset = selectBox<Preset>(PRESETS, current.preset, { id: "settings-preset" });
    const formats: CheckboxGroup<Format> = checkboxGroup("Default formats", FORMATS, current.formats, {
      "data-testid": "settings-formats",
    });
    const output = h("input", {
      id: "settings-output",
      type: "text",
      value: current.output_folder,
      spellcheck: "false",
    });
    const cloud = h("input", { id: "settings-cloud", type: "url", value: current.cloud_url, spellcheck: "false" });
    const logs = h("input", { id: "settings-logs", type: "text", value: current.log_folder, spellcheck: "false" });
    const save = h("button", { type: "submit", class: "primary", "data-testid": "settings-save" }, "Save");
    const cancel = h("button", { type: "button", "data-testid": "settings-cancel" }, "Cancel");
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", { id: "settings-title" }, "Settings"),
      field("Device", device, adapter ? `GPU found: ${adapter}` : "No GPU found: jobs train on the CPU."),
      field("Default preset", preset),
      formats.element,
      field("Output folder", output),
      field("Cloud server", cloud),
      field("Log folder", logs),
      h("div", { class: "actions" }, cancel, save),
    );
    cancel.addEventListener("click", () => this.dialog.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next: AppSettings = {
        device: device.value as Device,
        preset: preset.value as Preset,
        formats: formats.values(),
        output_folder: output.value.trim(),
        cloud_url: cloud.value.trim(),
        log_folder: logs.value.trim(),
      };
      save.disabled = true;
      ipc
        .setSettings(next)
        .then((stored) => {
          this.deps.saved(stored);
          this.dialog.close();
        })
        .catch((error: unknown) => showError("Could not save the settings", error))
        .finally(() => (save.disabled = false));
    });
    this.dialog.replaceChildren(form);
    this.dialog.setAttribute("aria-labelledby", "settings-title");
    this.dialog.showModal();
    device.focus();
  }
}

function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), control, hint && h("small", { class: "muted" }, hint));
}
