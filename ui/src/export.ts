// The Export pane (`#export`): a finished job's model in chosen formats (GLB, USDZ, OBJ, PLY) into
// a folder, the preset's triangle and texture budget, each file's size and validator result, and
// "Show in folder".

import type { AppSettings, ExportResult, Format, JobReport, JobRow } from "./bindings";
import { button, byId, checkboxGroup, h, type CheckboxGroup } from "./dom";
import { baseName, formatBytes, formatCount } from "./format";
import * as ipc from "./ipc";
import { FORMATS } from "./labels";
import { guard } from "./messages";

export interface ExportDeps {
  /** Default formats and output folder. */
  settings: () => AppSettings;
}

export class ExportPane {
  private readonly root = byId("export", HTMLElement);
  private readonly folder = byId("export-folder", HTMLInputElement);
  private readonly budget = byId("export-budget", HTMLElement);
  private readonly results = byId("export-results", HTMLElement);
  private readonly run = byId("export-run", HTMLButtonElement);
  private formats: CheckboxGroup<Format>;
  private row: JobRow | null = null;

  constructor(private readonly deps: ExportDeps) {
    this.formats = this.buildFormats();
    byId("export-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      void this.export();
    });
    this.setJob(null, null);
  }

  /** Follows the selected job: exports are offered for finished jobs. */
  setJob(row: JobRow | null, report: JobReport | null): void {
    const done = row?.state === "done" ? row : null;
    if (done?.id !== this.row?.id) this.results.replaceChildren();
    this.row = done;
    this.root.dataset.jobId = done?.id ?? "";
    byId("export-fields", HTMLFieldSetElement).disabled = done === null;
    byId("export-empty", HTMLElement).hidden = done !== null;
    if (!this.folder.value) this.folder.value = this.deps.settings().output_folder;
    const mesh = report?.metrics.mesh;
    this.budget.textContent = mesh
      ? `The model: ${formatCount(mesh.triangles)} triangles, ${mesh.texture_size}² texture (preset ${done?.preset ?? "–"}).`
      : "";
  }

  /** New default formats and folder after the settings changed. */
  settingsChanged(settings: AppSettings): void {
    this.folder.value = settings.output_folder;
    const fresh = this.buildFormats();
    this.formats = fresh;
  }

  private buildFormats(): CheckboxGroup<Format> {
    const group = checkboxGroup("Formats", FORMATS, this.deps.settings().formats, { "data-testid": "export-formats" });
    byId("export-formats", HTMLElement).replaceChildren(group.element);
    return group;
  }

  private async export(): Promise<void> {
    const row = this.row;
    if (!row) return;
    const formats = this.formats.values();
    const folder = this.folder.value.trim();
    if (formats.length === 0 || !folder) {
      this.results.replaceChildren(
        h("p", { class: "error-text" }, formats.length === 0 ? "Choose at least one format." : "Choose a folder."),
      );
      return;
    }
    this.run.disabled = true;
    this.results.replaceChildren(h("p", { class: "muted" }, "Exporting…"));
    const result = await guard(`Could not export ${row.name}`, () => ipc.exportJob(row.id, formats, folder));
    this.run.disabled = false;
    if (!result) {
      this.results.replaceChildren();
      return;
    }
    if (this.row?.id === row.id) this.showResult(row, result, folder);
  }

  private showResult(row: JobRow, result: ExportResult, folder: string): void {
    const triangles =
      result.max_triangles === null ? "undecimated" : `at most ${formatCount(result.max_triangles)} triangles`;
    this.budget.textContent = `Budget of the ${row.preset} preset: ${triangles}, ${result.texture_size}² texture.`;
    this.results.replaceChildren(
      h(
        "table",
        { class: "files", "data-testid": "export-files" },
        h("caption", {}, "Written"),
        ...result.files.map((file) => {
          const v = file.validator;
          return h(
            "tr",
            { "data-format": file.format },
            h("td", { title: file.path }, baseName(file.path)),
            h("td", { class: "num" }, formatBytes(file.bytes)),
            h(
              "td",
              {
                class: v ? (v.passed ? "pass" : "fail") : "muted",
                "data-testid": "validator",
                "data-passed": v ? String(v.passed) : "",
              },
              v ? `${v.passed ? "✓" : "✗"} ${v.name}: ${v.summary}` : "not validated",
            ),
          );
        }),
      ),
      button(
        "Show in folder",
        { "data-testid": "export-reveal" },
        () => void guard("Could not show the folder", () => ipc.revealExport(folder)),
      ),
    );
  }
}
