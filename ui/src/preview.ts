// The Preview pane: `#preview`, an <img> exactly the size of the frames it shows, rendered by
// the app's Rust side with kiln-viewer (`preview_frame`, the renderer of `kiln render`). Dragging
// orbits, the wheel zooms, arrow keys and +/- do the same from the keyboard; mode buttons (splats,
// mesh, wireframe, matcap), a cameras toggle, and "snap to photo N" with that photo beside the
// render. At most one frame is in flight: moves made meanwhile are folded into the next request.

import type { JobRow, PreviewMode, PreviewView } from "./bindings";
import { button, byId } from "./dom";
import * as ipc from "./ipc";
import { keys, PREVIEW_MODES } from "./labels";
import { showError } from "./messages";

/** The orbit a job opens at: `kiln render`'s default camera (30° around, 20° up, framed), so
 * the first frame equals `kiln render <job>` at the same size. */
const DEFAULT_ORBIT = { azimuth: 30, elevation: 20, distance: 1 } as const;

/** Degrees of orbit per CSS pixel dragged: a drag across a 640 px preview turns it about 250°. */
const DEGREES_PER_PIXEL = 0.4;

/** Degrees per arrow key press. */
const DEGREES_PER_KEY = 10;

/** Elevation stays short of the poles, where the orbit's up direction flips. */
const MAX_ELEVATION = 89;

/** Zoom per wheel unit (a mouse notch is about 100 units): one notch is about 10 %. */
const ZOOM_PER_WHEEL_UNIT = 0.001;

/** Closest and farthest orbit distance, as multiples of the framing distance. */
const DISTANCE_RANGE = [0.2, 5] as const;

/** Smallest frame side requested, pixels: a collapsed layout still gets a usable frame. */
const MIN_SIDE = 64;

/** Longer side of the photo shown beside a snapped view, pixels. */
const PHOTO_SIZE = 640;

export class PreviewPane {
  private readonly img = byId("preview", HTMLImageElement);
  private readonly viewport = byId("preview-viewport", HTMLElement);
  private readonly photoImg = byId("snap-photo-image", HTMLImageElement);
  private readonly photoInput = byId("snap-photo", HTMLInputElement);
  private readonly camerasBox = byId("show-cameras", HTMLInputElement);
  private readonly placeholder = byId("preview-empty", HTMLElement);
  private jobId: string | null = null;
  private azimuth: number = DEFAULT_ORBIT.azimuth;
  private elevation: number = DEFAULT_ORBIT.elevation;
  private distance: number = DEFAULT_ORBIT.distance;
  private mode: PreviewMode = "mesh";
  private photo: number | null = null;
  private inFlight = false;
  private pending = false;
  private failed = false;
  private frameUrl: string | null = null;
  private photoUrl: string | null = null;
  private drag: { x: number; y: number } | null = null;

  constructor() {
    this.buildModes();
    this.wirePointer();
    this.wireKeys();
    this.camerasBox.addEventListener("change", () => this.request());
    byId("snap-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.snap(Number(this.photoInput.value) - 1);
    });
    byId("snap-orbit", HTMLButtonElement).addEventListener("click", () => this.snap(null));
    window.addEventListener("resize", () => this.request());
  }

  /** Shows `row`'s model (a finished job), or nothing. `photos` bounds "snap to photo N". */
  setJob(row: JobRow | null, photos: number | null): void {
    const id = row?.state === "done" ? row.id : null;
    if (id === this.jobId) return;
    this.jobId = id;
    this.azimuth = DEFAULT_ORBIT.azimuth;
    this.elevation = DEFAULT_ORBIT.elevation;
    this.distance = DEFAULT_ORBIT.distance;
    this.failed = false;
    this.snapTo(null);
    this.photoInput.max = photos === null ? "" : String(photos);
    byId("preview-pane", HTMLElement).dataset.jobId = id ?? "";
    this.placeholder.hidden = id !== null;
    this.img.hidden = id === null;
    byId("preview-controls", HTMLFieldSetElement).disabled = id === null;
    if (id === null) this.setFrame(null);
    else this.request();
  }

  /** The view the next frame is rendered for: the viewport's size and the current camera. */
  view(): PreviewView {
    const ratio = window.devicePixelRatio || 1;
    const [cssWidth, cssHeight] = this.cssSize();
    return {
      width: Math.max(MIN_SIDE, Math.round(cssWidth * ratio)),
      height: Math.max(MIN_SIDE, Math.round(cssHeight * ratio)),
      azimuth_deg: this.azimuth,
      elevation_deg: this.elevation,
      distance_scale: this.distance,
      mode: this.mode,
      show_cameras: this.camerasBox.checked,
      photo: this.photo,
    };
  }

  /** Asks for a frame of the current view; while one is in flight, asks again once it lands. */
  request(): void {
    if (this.jobId === null) return;
    if (this.inFlight) {
      this.pending = true;
      return;
    }
    this.inFlight = true;
    this.pending = false;
    const jobId = this.jobId;
    const view = this.view();
    ipc
      .previewFrame(jobId, view)
      .then((url) => {
        if (jobId !== this.jobId) return URL.revokeObjectURL(url);
        this.failed = false;
        this.setFrame(url, view);
      })
      .catch((error: unknown) => {
        // One message per job until a frame comes through: a drag would otherwise repeat it.
        if (!this.failed && jobId === this.jobId) showError("The preview could not be rendered", error);
        this.failed = true;
      })
      .finally(() => {
        this.inFlight = false;
        if (this.pending) this.request();
      });
  }

  private cssSize(): [number, number] {
    const width = this.viewport.clientWidth;
    const height = this.viewport.clientHeight;
    return [Math.max(MIN_SIDE, Math.floor(width)), Math.max(MIN_SIDE, Math.floor(height))];
  }

  private setFrame(url: string | null, view?: PreviewView): void {
    if (this.frameUrl) URL.revokeObjectURL(this.frameUrl);
    this.frameUrl = url;
    if (url === null || !view) {
      this.img.removeAttribute("src");
      return;
    }
    const ratio = window.devicePixelRatio || 1;
    this.img.width = Math.round(view.width / ratio);
    this.img.height = Math.round(view.height / ratio);
    this.img.dataset.width = String(view.width);
    this.img.dataset.height = String(view.height);
    this.img.src = url;
  }

  private buildModes(): void {
    const group = byId("preview-modes", HTMLElement);
    for (const mode of keys(PREVIEW_MODES)) {
      const b = button(PREVIEW_MODES[mode], { "data-mode": mode, "aria-pressed": String(mode === this.mode) }, () => {
        this.mode = mode;
        for (const other of group.querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === b));
        this.request();
      });
      group.append(b);
    }
  }

  private wirePointer(): void {
    this.img.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      this.drag = { x: event.clientX, y: event.clientY };
      this.img.setPointerCapture?.(event.pointerId);
      event.preventDefault();
    });
    this.img.addEventListener("pointermove", (event) => {
      if (!this.drag) return;
      const dx = event.clientX - this.drag.x;
      const dy = event.clientY - this.drag.y;
      this.drag = { x: event.clientX, y: event.clientY };
      this.orbit(-dx * DEGREES_PER_PIXEL, dy * DEGREES_PER_PIXEL);
    });
    const end = () => (this.drag = null);
    this.img.addEventListener("pointerup", end);
    this.img.addEventListener("pointercancel", end);
    this.img.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        this.zoom(Math.exp(event.deltaY * ZOOM_PER_WHEEL_UNIT));
      },
      { passive: false },
    );
  }

  private wireKeys(): void {
    this.img.addEventListener("keydown", (event) => {
      const moves: Record<string, () => void> = {
        ArrowLeft: () => this.orbit(-DEGREES_PER_KEY, 0),
        ArrowRight: () => this.orbit(DEGREES_PER_KEY, 0),
        ArrowUp: () => this.orbit(0, DEGREES_PER_KEY),
        ArrowDown: () => this.orbit(0, -DEGREES_PER_KEY),
        "+": () => this.zoom(1 / 1.1),
        "=": () => this.zoom(1 / 1.1),
        "-": () => this.zoom(1.1),
        Home: () => this.resetOrbit(),
      };
      const move = moves[event.key];
      if (!move) return;
      event.preventDefault();
      move();
    });
  }

  private orbit(dAzimuth: number, dElevation: number): void {
    this.azimuth = (((this.azimuth + dAzimuth) % 360) + 360) % 360;
    this.elevation = Math.max(-MAX_ELEVATION, Math.min(MAX_ELEVATION, this.elevation + dElevation));
    this.snapTo(null);
    this.request();
  }

  private zoom(factor: number): void {
    this.distance = Math.max(DISTANCE_RANGE[0], Math.min(DISTANCE_RANGE[1], this.distance * factor));
    this.request();
  }

  private resetOrbit(): void {
    this.azimuth = DEFAULT_ORBIT.azimuth;
    this.elevation = DEFAULT_ORBIT.elevation;
    this.distance = DEFAULT_ORBIT.distance;
    this.snapTo(null);
    this.request();
  }

  /** Renders from input photo `index` (0-based) and shows the photo beside it; `null` orbits. */
  private snap(index: number | null): void {
    if (index !== null && (!Number.isInteger(index) || index < 0)) {
      showError("Cannot snap to that photo", "enter a photo number from 1");
      return;
    }
    this.snapTo(index);
    this.request();
  }

  private snapTo(index: number | null): void {
    if (index === this.photo) return;
    this.photo = index;
    if (this.photoUrl) URL.revokeObjectURL(this.photoUrl);
    this.photoUrl = null;
    this.photoImg.removeAttribute("src");
    this.photoImg.hidden = index === null;
    byId("snap-orbit", HTMLButtonElement).hidden = index === null;
    const jobId = this.jobId;
    if (index === null || jobId === null) return;
    this.photoImg.alt = `Input photo ${index + 1}`;
    ipc
      .photoImage(jobId, index, PHOTO_SIZE)
      .then((url) => {
        if (this.photo !== index || this.jobId !== jobId) return URL.revokeObjectURL(url);
        this.photoUrl = url;
        this.photoImg.src = url;
      })
      .catch((error: unknown) => showError(`Could not load photo ${index + 1}`, error));
  }
}
