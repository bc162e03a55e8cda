// The Add pane: the drop zone (`#drop-zone`), an "Add folder…" path field, and one card per draft
// (`.draft[data-draft-id]`) showing its capture check — a grid of photo thumbnails with each
// photo's verdict and reasons, the set's predicted outcome and advice, the photos that will be left
// out — then the preset, formats and where it runs, the estimate, and Start.
// `AddPane.addSources` is the one path in: the drop handler and `window.kiln.addSources` both call it.

import type { AppSettings, CheckReport, Draft, JobRow, PhotoCheck, StartOptions, Where } from "./bindings";
import {
  button,
  byId,
  checkboxGroup,
  fill,
  h,
  radioGroup,
  selectBox,
  type CheckboxGroup,
  type RadioGroup,
} from "./dom";
import { baseName, formatCount, formatEstimate } from "./format";
import * as ipc from "./ipc";
import { FORMATS, OUTCOMES, PRESETS, VERDICTS, WHERE } from "./labels";
import { guard, showError } from "./messages";

/** Longer side of a photo thumbnail, pixels: tiles are 88 CSS px wide, so twice that is sharp on
 * HiDPI screens and still a few kB of JPEG. */
const THUMBNAIL_SIZE = 176;

/** Thumbnails loaded at once: enough to fill the grid quickly, few enough that a check or a
 * running job keeps the app's threads. */
const THUMBNAIL_CONCURRENCY = 4;

export interface AddDeps {
  /** The settings new drafts start from. */
  settings: () => AppSettings;
  /** Whether the cloud is out of reach (no account): the cloud choice is then disabled. */
  offline: () => boolean;
  /** A job was started from a draft. */
  started: (row: JobRow) => void;
}

export class AddPane {
  private readonly drafts = new Map<string, DraftCard>();
  private readonly list: HTMLElement;

  constructor(private readonly deps: AddDeps) {
    this.list = byId("drafts", HTMLElement);
    this.wirePathForm();
  }

  /** Adds folders and ZIPs: drafts for the usable ones (each then checked), a message for each
   * rejected one. Resolves once every new draft's check is shown. */
  async addSources(paths: string[]): Promise<void> {
    if (paths.length === 0) return;
    const added = await guard("Could not add", () => ipc.addSources(paths));
    if (!added) return;
    for (const rejected of added.rejected) {
      showError(`Not added: ${baseName(rejected.path)}`, rejected.error);
    }
    const cards = added.drafts.map((draft) => {
      const card = new DraftCard(draft, this.deps, () => this.remove(draft.id));
      this.drafts.set(draft.id, card);
      this.list.prepend(card.element);
      return card;
    });
    await Promise.all(cards.map((card) => card.check()));
  }

  /** Signed in or out: every draft's cloud choice follows (a draft set to the cloud goes back to
   * this machine when the cloud is out of reach). */
  cloudChanged(offline: boolean): void {
    for (const cloud of this.list.querySelectorAll<HTMLInputElement>('input[type="radio"][value="cloud"]')) {
      cloud.disabled = offline;
      const local = cloud.closest("fieldset")?.querySelector<HTMLInputElement>('input[value="local"]');
      if (offline && cloud.checked && local) {
        local.checked = true;
        local.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }
  }

  private remove(id: string): void {
    this.drafts.get(id)?.dispose();
    this.drafts.delete(id);
  }

  /** "Add folder…": a path typed or pasted, for keyboards and until the native dialog lands. */
  private wirePathForm(): void {
    const form = byId("add-path-form", HTMLFormElement);
    const input = byId("add-path", HTMLInputElement);
    const toggle = byId("add-folder", HTMLButtonElement);
    toggle.addEventListener("click", () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) input.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const path = input.value.trim();
      if (!path) return;
      input.value = "";
      void this.addSources([path]);
    });
  }
}

/** One draft: its check, its options, Start. */
class DraftCard {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly urls: string[] = [];
  private report: CheckReport | null = null;
  private options: OptionsForm | null = null;
  private estimateToken = 0;
  private disposed = false;

  constructor(
    private readonly draft: Draft,
    private readonly deps: AddDeps,
    private readonly discard: () => void,
  ) {
    this.body = h(
      "div",
      { class: "draft-body" },
      h("p", { class: "muted", "data-testid": "checking" }, `Checking ${draft.photos} photos…`),
    );
    this.element = h(
      "article",
      { class: "draft card", "data-draft-id": draft.id, "data-testid": "draft", "aria-label": `Draft ${draft.name}` },
      h(
        "header",
        { class: "row" },
        h("h3", {}, draft.name),
        h(
          "span",
          { class: "muted" },
          `${draft.kind === "zip" ? "ZIP" : "Folder"} · ${formatCount(draft.photos)} photos`,
        ),
        h("span", { class: "spacer" }),
        button("Remove", { class: "quiet", "data-action": "remove" }, () => this.discard()),
      ),
      h("p", { class: "path muted", title: draft.source }, draft.source),
      this.body,
    );
  }

  /** Runs the capture check and shows it. */
  async check(): Promise<void> {
    try {
      this.report = await ipc.checkDraft(this.draft.id);
    } catch (error) {
      this.body.replaceChildren(h("p", { class: "error-text" }, `The check failed: ${ipc.errorMessage(error)}`));
      showError(`Could not check ${this.draft.name}`, error);
      return;
    }
    if (this.disposed) return;
    this.render(this.report);
    void this.loadThumbnails(this.report.photos.length);
    void this.updateEstimate();
  }

  dispose(): void {
    this.disposed = true;
    this.element.remove();
    for (const url of this.urls) URL.revokeObjectURL(url);
  }

  private render(report: CheckReport): void {
    const rejected = report.photos.filter((photo) => photo.verdict === "reject");
    this.options = new OptionsForm(this.draft.id, this.deps, () => void this.updateEstimate());
    const start = button(
      "Start",
      { class: "primary", "data-testid": "start", disabled: report.outcome === "will_fail" },
      () => void this.start(start),
    );
    fill(
      this.body,
      outcomeView(report),
      h("div", { class: "photo-grid", role: "list", "data-testid": "photos" }, ...report.photos.map(photoTile)),
      rejected.length > 0 &&
        h(
          "details",
          { class: "left-out", "data-testid": "left-out", open: true },
          h("summary", {}, `Left out (${rejected.length})`),
          h("ul", {}, ...rejected.map((photo) => h("li", {}, `${baseName(photo.path)}: ${reasons(photo)}`))),
        ),
      this.options.element,
      h(
        "div",
        { class: "row start-row" },
        h("output", { "data-testid": "estimate", class: "muted" }, "Estimating…"),
        h("span", { class: "spacer" }),
        start,
      ),
    );
  }

  private async loadThumbnails(count: number): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < count && !this.disposed) {
        const index = next++;
        const img = this.body.querySelector<HTMLImageElement>(`[data-index="${index}"] img`);
        try {
          const url = await ipc.photoThumbnail(this.draft.id, index, THUMBNAIL_SIZE);
          this.urls.push(url);
          if (img) img.src = url;
        } catch {
          img?.setAttribute("alt", "thumbnail unavailable");
        }
      }
    };
    await Promise.all(Array.from({ length: THUMBNAIL_CONCURRENCY }, worker));
  }

  private async updateEstimate(): Promise<void> {
    const output = this.body.querySelector<HTMLOutputElement>('[data-testid="estimate"]');
    if (!this.options || !output) return;
    const token = ++this.estimateToken;
    const options = this.options.value();
    try {
      const estimate = await ipc.estimate(this.draft.id, options);
      if (token !== this.estimateToken) return;
      const credits = estimate.credits === null ? "" : ` · ${formatCount(estimate.credits)} credits`;
      output.textContent = `Estimated time: ${formatEstimate(estimate.seconds)}${credits}`;
    } catch (error) {
      if (token === this.estimateToken) output.textContent = `No estimate: ${ipc.errorMessage(error)}`;
    }
  }

  private async start(start: HTMLButtonElement): Promise<void> {
    if (!this.options) return;
    const options = this.options.value();
    if (options.formats.length === 0) {
      showError(`Could not start ${this.draft.name}`, "choose at least one format");
      return;
    }
    start.disabled = true;
    const row = await guard(`Could not start ${this.draft.name}`, () => ipc.startJob(this.draft.id, options));
    if (!row) {
      start.disabled = false;
      return;
    }
    this.deps.started(row);
    this.discard();
  }
}

/** The preset, formats and where a draft runs. */
class OptionsForm {
  readonly element: HTMLElement;
  private readonly preset: HTMLSelectElement;
  private readonly formats: CheckboxGroup<keyof typeof FORMATS>;
  private readonly where: RadioGroup<Where>;

  constructor(draftId: string, deps: AddDeps, changed: () => void) {
    const settings = deps.settings();
    this.preset = selectBox(PRESETS, settings.preset, { "data-testid": "preset", id: `preset-${draftId}` });
    this.formats = checkboxGroup("Formats", FORMATS, settings.formats, { "data-testid": "formats" });
    this.where = radioGroup("Runs on", `where-${draftId}`, WHERE, deps.offline() ? "local" : "auto", {
      "data-testid": "where",
    });
    if (deps.offline()) {
      const cloud = this.where.element.querySelector<HTMLInputElement>('input[value="cloud"]');
      if (cloud) cloud.disabled = true;
    }
    this.element = h(
      "div",
      { class: "options" },
      h("label", { class: "field" }, h("span", {}, "Preset"), this.preset),
      this.formats.element,
      this.where.element,
    );
    this.element.addEventListener("change", changed);
  }

  value(): StartOptions {
    return {
      preset: this.preset.value as StartOptions["preset"],
      formats: this.formats.values(),
      where: this.where.value(),
    };
  }
}

function outcomeView(report: CheckReport): HTMLElement {
  const summary = report.summary;
  const coverage =
    summary.largest_gap_deg !== null && summary.largest_gap_deg !== undefined
      ? `largest gap ${Math.round(summary.largest_gap_deg)}°`
      : summary.loop_closed
        ? "all the way around"
        : "coverage unknown";
  return h(
    "section",
    { class: "outcome", "data-testid": "check" },
    h(
      "p",
      { class: `badge outcome-${report.outcome}`, "data-testid": "outcome", "data-outcome": report.outcome },
      OUTCOMES[report.outcome],
    ),
    h(
      "p",
      { class: "muted" },
      `${formatCount(summary.usable)} of ${formatCount(summary.photos)} photos usable · ${coverage}`,
    ),
    report.advice.length > 0 &&
      h("ul", { class: "advice", "data-testid": "advice" }, ...report.advice.map((line) => h("li", {}, line))),
  );
}

function photoTile(photo: PhotoCheck, index: number): HTMLElement {
  const name = baseName(photo.path);
  const why = reasons(photo);
  return h(
    "figure",
    {
      class: `photo verdict-${photo.verdict}`,
      role: "listitem",
      "data-testid": "photo",
      "data-index": index,
      "data-verdict": photo.verdict,
      title: why ? `${name}: ${why}` : name,
    },
    h("img", { alt: name, width: 88, height: 66, decoding: "async" }),
    h("figcaption", {}, h("span", { class: "name" }, name), h("span", { class: "verdict" }, VERDICTS[photo.verdict])),
    photo.findings.length > 0 &&
      h(
        "ul",
        { class: "reasons" },
        ...photo.findings.map((finding) => h("li", { "data-code": finding.code }, finding.message)),
      ),
  );
}

function reasons(photo: PhotoCheck): string {
  return photo.findings.map((finding) => finding.message).join("; ");
}
