// The training plot: loss (left axis, log scale: it falls over decades) and held-out PSNR (right
// axis, dB) against the step, drawn on a canvas. Colours come from the page's CSS variables so
// the plot follows the light or dark theme.

import type { TrainPoint } from "./bindings";

/** Padding around the plot area, CSS pixels: room for the axis labels. */
const PAD = { left: 44, right: 56, top: 10, bottom: 20 } as const;

/** Draws `points` on `canvas` at the canvas's displayed size. No-op without a 2D context. */
export function drawTrainPlot(canvas: HTMLCanvasElement, points: readonly TrainPoint[]): void {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const style = getComputedStyle(canvas);
  const colour = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = colour("--muted", "#777");
  const area = { x: PAD.left, y: PAD.top, w: width - PAD.left - PAD.right, h: height - PAD.top - PAD.bottom };
  if (points.length === 0 || area.w <= 0 || area.h <= 0) {
    ctx.fillText("Waiting for the first training steps…", PAD.left, height / 2);
    return;
  }
  const steps = points.map((p) => p.step);
  const x = scale(Math.min(...steps), Math.max(...steps), area.x, area.x + area.w);
  ctx.strokeStyle = colour("--border", "#ccc");
  ctx.strokeRect(area.x, area.y, area.w, area.h);
  ctx.textAlign = "center";
  ctx.fillText(`step ${Math.max(...steps)}`, area.x + area.w / 2, height - 5);
  const losses = points
    .filter((p) => p.loss !== null && p.loss > 0)
    .map((p) => ({ step: p.step, v: Math.log10(p.loss as number) }));
  const psnrs = points.filter((p) => p.psnr !== null).map((p) => ({ step: p.step, v: p.psnr as number }));
  series(ctx, losses, x, area, colour("--loss", "#d9534f"), "left", (v) => (10 ** v).toPrecision(2));
  series(ctx, psnrs, x, area, colour("--psnr", "#2a7ae2"), "right", (v) => `${v.toFixed(1)} dB`);
}

type Area = { x: number; y: number; w: number; h: number };

function series(
  ctx: CanvasRenderingContext2D,
  values: { step: number; v: number }[],
  x: (step: number) => number,
  area: Area,
  colour: string,
  side: "left" | "right",
  label: (v: number) => string,
): void {
  if (values.length === 0) return;
  const vs = values.map((p) => p.v);
  const [lo, hi] = [Math.min(...vs), Math.max(...vs)];
  const y = scale(lo, hi, area.y + area.h, area.y);
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.step), y(p.v)) : ctx.lineTo(x(p.step), y(p.v))));
  ctx.stroke();
  ctx.textAlign = side === "left" ? "right" : "left";
  const tx = side === "left" ? area.x - 4 : area.x + area.w + 4;
  ctx.fillText(label(hi), tx, area.y + 9);
  ctx.fillText(label(lo), tx, area.y + area.h);
}

/** A linear map from [lo, hi] to [a, b]; a flat range maps to the middle. */
function scale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  if (hi - lo < 1e-12) return () => (a + b) / 2;
  return (v) => a + ((v - lo) / (hi - lo)) * (b - a);
}
