// The Queue pane against a mocked Rust side: rows follow job-event (fraction, stage, ETA) and
// job-changed (state, actions), Delete asks first and deletes only after yes, the selected job
// shows its training figures while it trains and its report once done.

import { afterEach, describe, expect, test, vi } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { JobEvent } from "./bindings";
import { fire, jobReport, jobRow, one, start, until } from "./test/support";

afterEach(() => {
  clearMocks();
  vi.restoreAllMocks();
});

function trainEvent(done: number, loss: number, psnr: number | null, fields: Partial<JobEvent> = {}): JobEvent {
  return {
    stage: "train",
    kind: "progress",
    phase: "training",
    step: { done, total: 1500 },
    metrics: { loss, psnr, splats: 41000, device: "cpu", resumed_from_step: null },
    stage_fraction: done / 1500,
    job_fraction: 0.42,
    eta_s: 185,
    message: `step ${done}/1500 · loss ${loss}`,
    preview: null,
    ...fields,
  };
}

const row = (id: string) => one(`#queue li[data-job-id="${id}"]`);

describe("the queue", () => {
  test("rows follow job-event: progress bar, stage and ETA; job-changed: state and actions", async () => {
    // A running row's elapsed time advances with the clock: frozen here, so that a loaded machine
    // taking over a second between the event and the check does not read "31 s".
    vi.spyOn(performance, "now").mockReturnValue(1_000_000);
    await start({
      list_jobs: () => [jobRow("j2", "queued"), jobRow("j1", "running", { stage: "poses", elapsed_s: 30 })],
    });
    expect([...document.querySelectorAll<HTMLElement>("#queue li")].map((li) => li.dataset.jobId)).toEqual([
      "j2",
      "j1",
    ]);
    expect(row("j1").dataset.state).toBe("running");

    await fire("job-event", { job_id: "j1", event: trainEvent(300, 0.0421, null) });
    await until(() => expect(one<HTMLProgressElement>('[data-testid="progress"]', row("j1")).value).toBeCloseTo(0.42));
    expect(one('[data-testid="percent"]', row("j1")).textContent).toBe("42 %");
    expect(one('[data-testid="stage"]', row("j1")).textContent).toBe("Training · step 300/1500 · loss 0.0421");
    expect(one('[data-testid="eta"]', row("j1")).textContent).toBe("3 min 05 s");
    expect(one('[data-testid="elapsed"]', row("j1")).textContent).toBe("30 s");
    expect(one('[data-testid="progress"]', row("j2")).getAttribute("value")).toBe("0");
    expect(row("j1").querySelector('[data-action="delete"]')).toBeNull();

    await fire("job-changed", jobRow("j1", "done", { stage: "export", job_fraction: 1, elapsed_s: 200 }));
    await until(() => expect(row("j1").dataset.state).toBe("done"));
    expect(one('[data-testid="eta"]', row("j1")).textContent).toBe("–");
    expect(one('[data-testid="elapsed"]', row("j1")).textContent).toBe("3 min 20 s");
    const actions = [...row("j1").querySelectorAll<HTMLElement>("[data-action]")].map((b) => b.dataset.action);
    expect(actions).toEqual(["reveal", "delete"]);
  });

  test("a cloud job's row says where it stands between this machine and the service", async () => {
    const uploading = { where: "cloud" as const, cloud_phase: "uploading" as const, stage_fraction: 0.25 };
    await start({ list_jobs: () => [jobRow("j1", "running", uploading), jobRow("j2", "done")] });
    const stage = () => one('[data-testid="stage"]', row("j1")).textContent;
    expect(one('[data-testid="where-cloud"]', row("j1")).hidden).toBe(false);
    expect(one('[data-testid="where-cloud"]', row("j2")).hidden).toBe(true);
    expect(stage()).toBe("Uploading photos 25 %");
    expect(row("j1").dataset.cloudPhase).toBe("uploading");

    await fire("job-changed", jobRow("j1", "running", { ...uploading, cloud_phase: "waiting" }));
    await until(() => expect(stage()).toBe("Waiting for a cloud GPU"));
    await fire("job-changed", jobRow("j1", "running", { ...uploading, cloud_phase: "running", stage: "poses" }));
    await until(() => expect(stage()).toBe("In the cloud: Camera poses"));
    // The remote engine's events move the row as a local job's do.
    await fire("job-event", { job_id: "j1", event: trainEvent(100, 0.05, null) });
    await until(() => expect(stage()).toContain("In the cloud: Training"));
    await fire("job-changed", jobRow("j1", "running", { ...uploading, cloud_phase: "downloading", stage_fraction: 0.5 }));
    await until(() => expect(stage()).toBe("Downloading the results 50 %"));
    await fire("job-changed", jobRow("j1", "done", { where: "cloud", stage: "export", job_fraction: 1 }));
    await until(() => expect(row("j1").dataset.cloudPhase).toBe(""));
  });

  test("a job that went on from its checkpoint says so in its row, live and after", async () => {
    await start({ list_jobs: () => [jobRow("j1", "running", { stage: "train" }), jobRow("j2", "done", { resumed_from_step: 250 })] });
    const resumed = (id: string) => one('[data-testid="resumed"]', row(id));
    expect(resumed("j1").hidden).toBe(true);
    expect(resumed("j2").hidden).toBe(false);
    expect(resumed("j2").textContent).toBe("resumed from step 250");

    const metrics = { loss: 0.05, psnr: null, splats: 41000, device: "cpu", resumed_from_step: 400 };
    await fire("job-event", { job_id: "j1", event: trainEvent(401, 0.05, null, { metrics }) });
    await until(() => expect(resumed("j1").hidden).toBe(false));
    expect(resumed("j1").textContent).toBe("resumed from step 400");
    // A later event without the figure (another stage) keeps what the row knows.
    await fire("job-event", { job_id: "j1", event: trainEvent(1500, 0.04, 30, { stage: "mesh", metrics: null }) });
    await until(() => expect(one('[data-testid="stage"]', row("j1")).textContent).toContain("Mesh"));
    expect(resumed("j1").textContent).toBe("resumed from step 400");
  });

  test("a job-changed for a new job adds its row on top", async () => {
    await start({ list_jobs: () => [jobRow("j1", "done")] });
    await fire("job-changed", jobRow("j9", "queued"));
    await until(() => expect(document.querySelectorAll("#queue li")).toHaveLength(2));
    expect(one("#queue li").dataset.jobId).toBe("j9");
  });

  test("Delete asks first: Cancel keeps the job, yes calls delete_job and removes the row", async () => {
    const { backend } = await start({ list_jobs: () => [jobRow("j1", "done")], delete_job: () => null });
    const dialog = one<HTMLDialogElement>("#confirm");

    one<HTMLButtonElement>('[data-action="delete"]', row("j1")).click();
    await until(() => expect(dialog.open).toBe(true));
    expect(dialog.textContent).toContain("/home/me/Kiln/jobs/j1");
    expect(dialog.textContent).toContain("The photos in /home/me/photos/j1 are not touched");
    expect(backend.of("delete_job")).toHaveLength(0);
    one<HTMLButtonElement>('[data-testid="confirm-no"]', dialog).click();
    await until(() => expect(dialog.open).toBe(false));
    expect(backend.of("delete_job")).toHaveLength(0);
    expect(document.querySelector('#queue li[data-job-id="j1"]')).not.toBeNull();

    one<HTMLButtonElement>('[data-action="delete"]', row("j1")).click();
    await until(() => expect(dialog.open).toBe(true));
    one<HTMLButtonElement>('[data-testid="confirm-yes"]', dialog).click();
    await until(() => expect(backend.of("delete_job")).toEqual([{ cmd: "delete_job", args: { jobId: "j1" } }]));
    await until(() => expect(document.querySelector('#queue li[data-job-id="j1"]')).toBeNull());
  });

  test("Cancel, Resume and Retry send the job's id and show the returned row", async () => {
    const { backend } = await start({
      list_jobs: () => [
        jobRow("j1", "running"),
        jobRow("j2", "interrupted"),
        jobRow("j3", "failed", { error: { class: "device", message: "device lost" } }),
      ],
      cancel_job: () => jobRow("j1", "canceled"),
      resume_job: () => jobRow("j2", "queued"),
      retry_job: () => jobRow("j3", "queued"),
    });
    expect(one('[data-testid="stage"]', row("j3")).textContent).toContain("device lost");
    one<HTMLButtonElement>('[data-action="cancel"]', row("j1")).click();
    one<HTMLButtonElement>('[data-action="resume"]', row("j2")).click();
    one<HTMLButtonElement>('[data-action="retry"]', row("j3")).click();
    await until(() => expect(row("j1").dataset.state).toBe("canceled"));
    await until(() => expect(row("j2").dataset.state).toBe("queued"));
    await until(() => expect(row("j3").dataset.state).toBe("queued"));
    expect(backend.of("cancel_job")[0]?.args).toEqual({ jobId: "j1" });
    expect(backend.of("resume_job")[0]?.args).toEqual({ jobId: "j2" });
    expect(backend.of("retry_job")[0]?.args).toEqual({ jobId: "j3" });
  });

  test("a training job's detail shows its history and live figures, and the latest preview", async () => {
    const { backend } = await start({
      list_jobs: () => [jobRow("j1", "running", { stage: "train" })],
      train_history: () => [{ step: 100, loss: 0.09, psnr: null }],
      latest_preview: () => new Uint8Array([137, 80, 78, 71]).buffer,
    });
    row("j1").click();
    await until(() => expect(one("#training").hidden).toBe(false));
    expect(backend.of("train_history")[0]?.args).toEqual({ jobId: "j1" });
    await until(() => expect(one('[data-testid="train-figures"]').textContent).toBe("step 100 · loss 0.0900 · PSNR –"));

    await fire("job-event", {
      job_id: "j1",
      event: trainEvent(250, 0.05, 22.5, { preview: "/home/me/Kiln/jobs/j1/train/preview.png" }),
    });
    await until(() =>
      expect(one('[data-testid="train-figures"]').textContent).toBe(
        "step 250 · loss 0.0500 · PSNR 22.50 dB · 41000 splats on cpu",
      ),
    );
    const preview = one<HTMLImageElement>('[data-testid="latest-preview"]');
    await until(() => expect(preview.hidden).toBe(false));
    expect(backend.of("latest_preview")[0]?.args).toEqual({ jobId: "j1" });
    expect(preview.src).toMatch(/^blob:/);
    expect(one("#report").hidden).toBe(true);
  });

  test("a finished job shows its report: registered photos, PSNR, triangles, file sizes, validators", async () => {
    const { backend } = await start({ list_jobs: () => [jobRow("j1", "done")], job_report: () => jobReport("j1") });
    row("j1").click();
    await until(() => expect(one("#report").hidden).toBe(false));
    expect(backend.of("job_report")[0]?.args).toEqual({ jobId: "j1" });
    const report = one("#report");
    expect(one('[data-testid="registered"]', report).textContent).toBe("22 of 24");
    expect(one('[data-testid="psnr"]', report).textContent).toBe("24.31 dB");
    expect(one('[data-testid="triangles"]', report).textContent).toBe("23,456");
    const files = one('[data-testid="files"]', report).textContent ?? "";
    expect(files).toContain("model.glb");
    expect(files).toContain("1.4 MB");
    expect(files).toContain("2.1 MB");
    const validator = one('[data-testid="validators"] li', report);
    expect(validator.dataset.passed).toBe("true");
    expect(validator.textContent).toContain("gltf-validator on model.glb: passed");
    expect(one("#training").hidden).toBe(true);
  });

  test("arrow keys move the selection through the rows", async () => {
    await start({ list_jobs: () => [jobRow("j3", "done"), jobRow("j2", "done"), jobRow("j1", "done")] });
    expect(row("j3").tabIndex).toBe(0);
    expect(row("j2").tabIndex).toBe(-1);
    row("j3").focus();
    one("#queue").dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    await until(() => expect(row("j3").getAttribute("aria-current")).toBe("true"));
    one("#queue").dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    await until(() => expect(row("j2").getAttribute("aria-current")).toBe("true"));
    expect(row("j3").hasAttribute("aria-current")).toBe(false);
    expect(row("j2").tabIndex).toBe(0);
    expect(document.activeElement).toBe(row("j2"));
  });
});
