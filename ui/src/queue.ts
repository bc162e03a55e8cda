// The Queue pane: one row per job (`#queue > li[data-job-id][data-state]`) with its stage, a
// progress bar of the job fraction, ETA and elapsed time, updated live from `job-event` and
// `job-changed`; Cancel / Resume / Retry / Reveal / Delete (Delete asks first). The selected job's
// detail: during training a loss and PSNR plot and the latest preview image (`#training`), once it
// ended its report (`#report`). Arrow keys move the selection through the rows.

import type { JobEvent, JobReport, JobRow, JobState, TrainPoint } from "./bindings";
import { button, byId, confirmDialog, h } from "./dom";
import { formatDb, formatDuration, formatPercent } from "./format";
import * as ipc from "./ipc";
import { CLOUD_PHASES, JOB_STATES, STAGES } from "./labels";
import { drawTrainPlot } from "./plot";
import { renderReport } from "./report";
import { guard } from "./messages";

/** How often a running job's elapsed time is advanced between events, milliseconds. */
const ELAPSED_TICK_MS = 1000;

type Action = "cancel" | "resume" | "retry" | "reveal" | "delete";

/** What can be done to a job in each state (a running job is canceled before it is deleted). */
const ACTIONS: Record<JobState, Action[]> = {
  queued: ["cancel", "delete"],
  running: ["cancel"],
  done: ["reveal", "delete"],
  failed: ["retry", "reveal", "delete"],
  canceled: ["resume", "reveal", "delete"],
  interrupted: ["resume", "reveal", "delete"],
};

const ACTION_LABELS: Record<Action, string> = {
  cancel: "Cancel",
  resume: "Resume",
  retry: "Retry",
  reveal: "Reveal",
  delete: "Delete",
};

/** States whose detail shows training progress rather than a report. */
const LIVE_STATES: readonly JobState[] = ["queued", "running", "interrupted", "canceled"];

export interface QueueDeps {
  /** The selected job changed, or its state did: the preview and export panes follow it. */
  selected: (row: JobRow | null, report: JobReport | null) => void;
}

export class QueuePane {
  private readonly rows = new Map<string, RowView>();
  private readonly history = new Map<string, TrainPoint[]>();
  private readonly list = byId("queue", HTMLOListElement);
  private selectedId: string | null = null;

  constructor(private readonly deps: QueueDeps) {
    this.list.addEventListener("keydown", (event) => this.onKey(event));
    window.setInterval(() => this.tick(), ELAPSED_TICK_MS);
  }

  /** Shows the persistent queue as the app found it. */
  async load(): Promise<void> {
    const rows = await guard("Could not read the queue", () => ipc.listJobs());
    for (const row of [...(rows ?? [])].reverse()) this.upsert(row);
  }

  /** A job's new row (started, or its state changed). */
  upsert(row: JobRow): void {
    const view = this.rows.get(row.id);
    const stateChanged = view?.row.state !== row.state;
    if (view) view.update(row);
    else {
      const created = new RowView(
        row,
        (action) => void this.act(action, row.id),
        () => this.select(row.id),
      );
      this.rows.set(row.id, created);
      this.list.prepend(created.element);
      this.updateEmpty();
    }
    this.updateTabStops();
    if (row.id === this.selectedId && stateChanged) void this.showDetail();
  }

  /** A live event of the job layer. */
  applyEvent(payload: ipc.JobEventPayload): void {
    const view = this.rows.get(payload.job_id);
    if (!view) return;
    view.applyEvent(payload.event);
    const point = trainPoint(payload.event, this.history.get(payload.job_id));
    if (point) this.history.set(payload.job_id, [...(this.history.get(payload.job_id) ?? []), point]);
    if (payload.job_id === this.selectedId) this.showLive(payload.event);
  }

  /** Selects a job (its row, its detail, the preview and export panes). */
  select(id: string | null): void {
    if (id === this.selectedId) return;
    this.selectedId = id;
    for (const [rowId, view] of this.rows) view.setSelected(rowId === id);
    this.updateTabStops();
    void this.showDetail();
  }

  private async act(action: Action, id: string): Promise<void> {
    const view = this.rows.get(id);
    if (!view) return;
    const name = view.row.name;
    switch (action) {
      case "cancel":
        return this.replace(await guard(`Could not cancel ${name}`, () => ipc.cancelJob(id)));
      case "resume":
        return this.replace(await guard(`Could not resume ${name}`, () => ipc.resumeJob(id)));
      case "retry":
        return this.replace(await guard(`Could not retry ${name}`, () => ipc.retryJob(id)));
      case "reveal":
        await guard(`Could not show the folder of ${name}`, () => ipc.revealJob(id));
        return;
      case "delete":
        return this.delete(view.row);
    }
  }

  private replace(row: JobRow | undefined): void {
    if (row) this.upsert(row);
  }

  private async delete(row: JobRow): Promise<void> {
    const yes = await confirmDialog(
      `Delete “${row.name}”?`,
      `This removes the job folder ${row.job_dir} with its models. The photos in ${row.source} are not touched.`,
      "Delete job",
    );
    if (!yes) return;
    const done = await guard(`Could not delete ${row.name}`, async () => {
      await ipc.deleteJob(row.id);
      return true;
    });
    if (!done) return;
    this.rows.get(row.id)?.element.remove();
    this.rows.delete(row.id);
    this.history.delete(row.id);
    this.updateEmpty();
    if (this.selectedId === row.id) this.select(null);
    this.updateTabStops();
  }

  /** The selected job's detail, from scratch: its live view or its report. */
  private async showDetail(): Promise<void> {
    const id = this.selectedId;
    const row = id === null ? undefined : this.rows.get(id)?.row;
    const detail = byId("job-detail", HTMLElement);
    const training = byId("training", HTMLElement);
    const reportEl = byId("report", HTMLElement);
    detail.hidden = !row;
    training.hidden = true;
    reportEl.hidden = true;
    if (!row) {
      this.deps.selected(null, null);
      return;
    }
    byId("detail-title", HTMLElement).textContent = row.name;
    byId("detail-state", HTMLElement).textContent = JOB_STATES[row.state];
    byId("detail-error", HTMLElement).textContent = row.error?.message ?? "";
    if (LIVE_STATES.includes(row.state)) {
      training.hidden = false;
      this.deps.selected(row, null);
      const history = await guard("Could not read the training history", () => ipc.trainHistory(row.id));
      if (history && this.selectedId === row.id)
        this.history.set(row.id, mergeHistory(history, this.history.get(row.id)));
      this.showLive(null);
      return;
    }
    const report = await guard(`Could not read the report of ${row.name}`, () => ipc.jobReport(row.id));
    if (this.selectedId !== row.id) return;
    if (report) {
      renderReport(reportEl, report);
      reportEl.hidden = false;
    }
    this.deps.selected(row, report ?? null);
  }

  /** The training plot, the latest figures and the latest preview of the selected job. */
  private showLive(event: JobEvent | null): void {
    const id = this.selectedId;
    if (id === null) return;
    drawTrainPlot(byId("train-plot", HTMLCanvasElement), this.history.get(id) ?? []);
    const last = this.history.get(id)?.at(-1);
    const figures = byId("train-figures", HTMLElement);
    if (last)
      figures.textContent = `step ${last.step} · loss ${last.loss?.toPrecision(3) ?? "–"} · PSNR ${formatDb(last.psnr)}`;
    else if (!event) figures.textContent = "No training steps yet.";
    if (event?.metrics) figures.textContent += ` · ${event.metrics.splats} splats on ${event.metrics.device}`;
    if (event?.preview) {
      const img = byId("latest-preview", HTMLImageElement);
      void ipc.latestPreview(id).then((url) => {
        URL.revokeObjectURL(img.src);
        img.src = url;
        img.hidden = false;
      }, () => undefined);
    }
  }

  private onKey(event: KeyboardEvent): void {
    const ids = [...this.list.querySelectorAll<HTMLElement>("li[data-job-id]")].map((li) => li.dataset.jobId ?? "");
    if (ids.length === 0 || event.target instanceof HTMLButtonElement) return;
    const at = this.selectedId === null ? -1 : ids.indexOf(this.selectedId);
    const next =
      event.key === "ArrowDown"
        ? Math.min(ids.length - 1, at + 1)
        : event.key === "ArrowUp"
          ? Math.max(0, at - 1)
          : event.key === "Home"
            ? 0
            : event.key === "End"
              ? ids.length - 1
              : null;
    if (next === null) return;
    event.preventDefault();
    this.select(ids[next] ?? null);
    this.rows.get(ids[next] ?? "")?.element.focus();
  }

  /** One row is in the tab order: the selected one, else the first. */
  private updateTabStops(): void {
    const first = this.list.querySelector("li[data-job-id]");
    for (const [id, view] of this.rows) {
      const stop = this.selectedId === null ? view.element === first : id === this.selectedId;
      view.element.tabIndex = stop ? 0 : -1;
    }
  }

  private updateEmpty(): void {
    byId("queue-empty", HTMLElement).hidden = this.rows.size > 0;
  }

  private tick(): void {
    for (const view of this.rows.values()) view.tick();
  }
}

/** What a row says the job is doing: its stage, or for a cloud job its way there and back. */
export function stageText(row: JobRow): string {
  const stage = row.stage ? STAGES[row.stage] : row.state === "queued" ? "Waiting" : "";
  switch (row.cloud_phase) {
    case null:
      return stage;
    case "running":
      return [CLOUD_PHASES.running, stage].filter(Boolean).join(": ");
    case "waiting":
      return CLOUD_PHASES.waiting;
    case "uploading":
    case "downloading":
      return `${CLOUD_PHASES[row.cloud_phase]} ${formatPercent(row.stage_fraction)}`;
  }
}

/** One job's row. */
class RowView {
  readonly element: HTMLLIElement;
  private readonly stage = h("span", { class: "stage", "data-testid": "stage" });
  private readonly progress = h("progress", { max: 1, value: 0, "data-testid": "progress" });
  private readonly percent = h("span", { class: "num", "data-testid": "percent" });
  private readonly eta = h("span", { class: "num", "data-testid": "eta" });
  private readonly elapsed = h("span", { class: "num", "data-testid": "elapsed" });
  private readonly state = h("span", { class: "state", "data-testid": "state" });
  private readonly resumed = h("span", { class: "badge resumed", "data-testid": "resumed" });
  private readonly cloud = h("span", { class: "badge cloud", "data-testid": "where-cloud" }, "Cloud");
  private readonly actions = h("span", { class: "actions" });
  private message = "";
  private receivedAt = performance.now();

  constructor(
    public row: JobRow,
    private readonly act: (action: Action) => void,
    select: () => void,
  ) {
    this.element = h(
      "li",
      { "data-job-id": row.id, "data-testid": "job" },
      h(
        "div",
        { class: "row" },
        h("strong", { class: "name" }, row.name),
        this.state,
        this.cloud,
        this.resumed,
        h("span", { class: "spacer" }),
        this.actions,
      ),
      h("div", { class: "row progress-row" }, this.progress, this.percent),
      h("div", { class: "row muted small" }, this.stage),
      h("div", { class: "times muted small" }, "ETA ", this.eta, " · ", this.elapsed, " elapsed"),
    );
    this.element.addEventListener("click", select);
    this.update(row);
  }

  update(row: JobRow): void {
    const stateChanged = row.state !== this.row.state || this.actions.childElementCount === 0;
    this.row = row;
    this.receivedAt = performance.now();
    this.element.dataset.state = row.state;
    this.state.textContent = JOB_STATES[row.state];
    this.state.className = `state badge state-${row.state}`;
    if (row.state !== "running") this.message = row.state === "failed" ? (row.error?.message ?? "") : "";
    // The remote engine's last message is stale once a cloud job is past its stages (or before).
    else if (row.cloud_phase !== null && row.cloud_phase !== "running") this.message = "";
    this.render();
    if (stateChanged) this.renderActions();
  }

  applyEvent(event: JobEvent): void {
    this.row = {
      ...this.row,
      stage: event.stage,
      stage_fraction: event.stage_fraction,
      job_fraction: event.job_fraction,
      eta_s: event.eta_s,
      resumed_from_step: event.metrics?.resumed_from_step ?? this.row.resumed_from_step,
    };
    this.message = event.message;
    this.render();
  }

  setSelected(selected: boolean): void {
    if (selected) this.element.setAttribute("aria-current", "true");
    else this.element.removeAttribute("aria-current");
    this.element.classList.toggle("selected", selected);
  }

  /** Advances a running job's elapsed time between events. */
  tick(): void {
    if (this.row.state === "running") this.elapsed.textContent = formatDuration(this.liveElapsed());
  }

  private liveElapsed(): number {
    const since = this.row.state === "running" ? (performance.now() - this.receivedAt) / 1000 : 0;
    return this.row.elapsed_s + since;
  }

  private render(): void {
    const row = this.row;
    this.element.dataset.cloudPhase = row.cloud_phase ?? "";
    this.cloud.hidden = row.where !== "cloud";
    this.stage.textContent = [stageText(row), this.message].filter(Boolean).join(" · ");
    this.stage.title = this.stage.textContent;
    this.progress.value = row.job_fraction;
    this.progress.setAttribute("aria-label", `${row.name}: ${formatPercent(row.job_fraction)}`);
    this.percent.textContent = formatPercent(row.job_fraction);
    this.eta.textContent = row.eta_s === null || row.state !== "running" ? "–" : formatDuration(row.eta_s);
    this.elapsed.textContent = formatDuration(this.liveElapsed());
    const step = row.resumed_from_step;
    this.resumed.hidden = step === null;
    this.resumed.textContent = step === null ? "" : `resumed from step ${step}`;
    this.resumed.title =
      step === null ? "" : `Training went on from its checkpoint at step ${step} instead of starting over`;
  }

  private renderActions(): void {
    this.actions.replaceChildren(
      ...ACTIONS[this.row.state].map((action) =>
        button(
          ACTION_LABELS[action],
          {
            class: action === "delete" ? "quiet danger" : "quiet",
            "data-action": action,
            "aria-label": `${ACTION_LABELS[action]} ${this.row.name}`,
          },
          () => this.act(action),
        ),
      ),
    );
  }
}

/** The plot point a training progress event carries, if any (steps only go forward). */
function trainPoint(event: JobEvent, history: TrainPoint[] | undefined): TrainPoint | null {
  if (event.stage !== "train" || !event.metrics || !event.step) return null;
  const step = event.step.done;
  const last = history?.at(-1);
  if (last && step <= last.step) return null;
  return { step, loss: event.metrics.loss, psnr: event.metrics.psnr };
}

/** The stored history, then the live points that came after it. */
function mergeHistory(stored: TrainPoint[], live: TrainPoint[] | undefined): TrainPoint[] {
  const lastStored = stored.at(-1)?.step ?? -1;
  return [...stored, ...(live ?? []).filter((p) => p.step > lastStored)];
}
