// The Preview pane against a mocked Rust side: frames are requested at the viewport's size with
// the orbit the user dragged to, at most one at a time, in the chosen mode; "snap to photo N"
// renders from that photo's camera and shows the photo beside the frame.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { PreviewView } from "./bindings";
import { bytes, deferred, jobReport, jobRow, one, start, until, type Backend } from "./test/support";

afterEach(() => clearMocks());

/** Gives the viewport a layout size (happy-dom lays nothing out). */
function sizeViewport(width: number, height: number): void {
  const viewport = one("#preview-viewport");
  Object.defineProperty(viewport, "clientWidth", { configurable: true, value: width });
  Object.defineProperty(viewport, "clientHeight", { configurable: true, value: height });
}

const views = (backend: Backend) => backend.of("preview_frame").map((c) => c.args.view as PreviewView);

function pointer(type: string, x: number, y: number): PointerEvent {
  return new PointerEvent(type, { clientX: x, clientY: y, button: 0, pointerId: 1, bubbles: true });
}

async function openDoneJob(handlers: Parameters<typeof start>[0] = {}): Promise<Backend> {
  const { backend } = await start({
    list_jobs: () => [jobRow("j1", "done")],
    job_report: () => jobReport("j1"),
    ...handlers,
  });
  sizeViewport(480, 320);
  one("#queue li").click();
  await until(() => expect(backend.of("preview_frame")).toHaveLength(1));
  return backend;
}

describe("the preview", () => {
  test("the first frame is the element's size, from kiln render's default orbit, shown in #preview", async () => {
    const backend = await openDoneJob();
    expect(backend.of("preview_frame")[0]?.args.jobId).toBe("j1");
    expect(views(backend)[0]).toEqual({
      width: 480,
      height: 320,
      azimuth_deg: 30,
      elevation_deg: 20,
      distance_scale: 1,
      mode: "mesh",
      show_cameras: false,
      photo: null,
    });
    const img = one<HTMLImageElement>("#preview");
    await until(() => expect(img.src).toMatch(/^blob:/));
    expect([img.width, img.height]).toEqual([480, 320]);
    expect(img.hidden).toBe(false);
  });

  test("a drag orbits and the wheel zooms; one frame in flight, the latest view requested next", async () => {
    const frames = [deferred<ArrayBuffer>(), deferred<ArrayBuffer>(), deferred<ArrayBuffer>()];
    let asked = 0;
    const backend = await openDoneJob({ preview_frame: () => frames[asked++]?.promise });
    const img = one<HTMLImageElement>("#preview");

    img.dispatchEvent(pointer("pointerdown", 100, 100));
    img.dispatchEvent(pointer("pointermove", 150, 100));
    img.dispatchEvent(pointer("pointermove", 150, 125));
    img.dispatchEvent(pointer("pointerup", 150, 125));
    img.dispatchEvent(new WheelEvent("wheel", { deltaY: -100, bubbles: true, cancelable: true }));
    expect(backend.of("preview_frame")).toHaveLength(1);

    frames[0]?.resolve(bytes());
    await until(() => expect(backend.of("preview_frame")).toHaveLength(2));
    const latest = views(backend)[1];
    expect(latest?.azimuth_deg).toBeCloseTo(10);
    expect(latest?.elevation_deg).toBeCloseTo(30);
    expect(latest?.distance_scale).toBeCloseTo(Math.exp(-0.1));
    expect([latest?.width, latest?.height]).toEqual([480, 320]);
    frames[1]?.resolve(bytes());
    await new Promise((r) => setTimeout(r, 20));
    expect(backend.of("preview_frame")).toHaveLength(2);
  });

  test("mode buttons and the cameras toggle change what is requested", async () => {
    const backend = await openDoneJob();
    one<HTMLButtonElement>('#preview-modes [data-mode="wireframe"]').click();
    await until(() => expect(views(backend).at(-1)?.mode).toBe("wireframe"));
    expect(one('[data-mode="wireframe"]').getAttribute("aria-pressed")).toBe("true");
    expect(one('[data-mode="mesh"]').getAttribute("aria-pressed")).toBe("false");
    const cameras = one<HTMLInputElement>("#show-cameras");
    cameras.checked = true;
    cameras.dispatchEvent(new Event("change"));
    await until(() => expect(views(backend).at(-1)?.show_cameras).toBe(true));
  });

  test("snap to photo N renders from that photo's camera with the photo beside it", async () => {
    const backend = await openDoneJob();
    expect(one<HTMLInputElement>("#snap-photo").max).toBe("24");
    one<HTMLInputElement>("#snap-photo").value = "3";
    one<HTMLFormElement>("#snap-form").requestSubmit();
    await until(() => expect(views(backend).at(-1)?.photo).toBe(2));
    expect(backend.of("photo_image")[0]?.args).toMatchObject({ jobId: "j1", index: 2 });
    const photo = one<HTMLImageElement>("#snap-photo-image");
    await until(() => expect(photo.src).toMatch(/^blob:/));
    expect(photo.hidden).toBe(false);

    const img = one<HTMLImageElement>("#preview");
    img.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowLeft", bubbles: true }));
    await until(() => expect(views(backend).at(-1)?.photo).toBeNull());
    expect(views(backend).at(-1)?.azimuth_deg).toBeCloseTo(20);
    expect(photo.hidden).toBe(true);
  });

  test("a failed frame shows its message once and the preview keeps working", async () => {
    let fail = true;
    const backend = await openDoneJob({
      preview_frame: () =>
        fail ? Promise.reject({ class: "device", message: "no adapter for the preview" }) : bytes(),
    });
    await until(() => expect(one("#messages").textContent).toContain("no adapter for the preview"));
    one("#preview").dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }));
    await until(() => expect(backend.of("preview_frame")).toHaveLength(2));
    expect(document.querySelectorAll('#messages [data-testid="message-error"]')).toHaveLength(1);
    fail = false;
    one("#preview").dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }));
    await until(() => expect(one<HTMLImageElement>("#preview").src).toMatch(/^blob:/));
  });

  test("a job that is not finished shows no preview", async () => {
    const { backend } = await start({ list_jobs: () => [jobRow("j1", "running")] });
    one("#queue li").click();
    await until(() => expect(one("#training").hidden).toBe(false));
    expect(one("#preview-empty").hidden).toBe(false);
    expect(one<HTMLFieldSetElement>("#preview-controls").disabled).toBe(true);
    expect(backend.of("preview_frame")).toHaveLength(0);
  });
});
