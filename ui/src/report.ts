// A finished (or failed) job's report (`#report`): the verdict on the model and its reasons,
// registered photos, held-out PSNR, triangles and texture, the delivered files with their sizes,
// the validators' results and every stage's status and time.

import type { JobReport } from "./bindings";
import { fill, h } from "./dom";
import { baseName, formatBytes, formatCount, formatDb, formatDuration } from "./format";
import { STAGES } from "./labels";

/** Renders `report` into `target` (the `#report` element). */
export function renderReport(target: HTMLElement, report: JobReport): void {
  const { poses, train, mesh } = report.metrics;
  const files = report.metrics.export?.files ?? [];
  fill(
    target,
    h("h3", {}, "Report"),
    report.verdict &&
      h(
        "p",
        { class: `badge verdict-${report.verdict}`, "data-testid": "verdict", "data-verdict": report.verdict },
        `Model: ${report.verdict}`,
      ),
    report.findings.length > 0 && h("ul", { class: "findings" }, ...report.findings.map((f) => h("li", {}, f.message))),
    report.error && h("p", { class: "error-text", "data-testid": "report-error" }, report.error),
    h(
      "dl",
      { class: "figures" },
      ...figure(
        "Registered photos",
        "registered",
        poses ? `${formatCount(poses.registered_images)} of ${formatCount(poses.photos)}` : "–",
      ),
      ...figure("PSNR (held out)", "psnr", formatDb(train?.psnr)),
      ...figure("Splats", "splats", train ? formatCount(train.splats) : "–"),
      ...figure("Triangles", "triangles", mesh ? formatCount(mesh.triangles) : "–"),
      ...figure("Texture", "texture", mesh ? `${mesh.texture_size}²` : "–"),
      ...figure("Time", "seconds", formatDuration(report.seconds)),
    ),
    files.length > 0 &&
      h(
        "table",
        { class: "files", "data-testid": "files" },
        h("caption", {}, "Files"),
        ...files.map((file) =>
          h(
            "tr",
            {},
            h("td", { title: file.path }, baseName(file.path)),
            h("td", { class: "num" }, formatBytes(file.bytes)),
          ),
        ),
      ),
    report.validators.length > 0 &&
      h(
        "ul",
        { class: "validators", "data-testid": "validators" },
        ...report.validators.map((v) =>
          h(
            "li",
            { class: v.passed ? "pass" : "fail", "data-passed": String(v.passed) },
            `${v.passed ? "✓" : "✗"} ${v.validator} on ${baseName(v.file)}: ${v.passed ? "passed" : "failed"}`,
            v.detail && h("div", { class: "muted detail" }, v.detail),
          ),
        ),
      ),
    h(
      "table",
      { class: "stages", "data-testid": "stages" },
      h("caption", {}, "Stages"),
      ...report.stages.map((s) =>
        h(
          "tr",
          { "data-stage": s.stage, "data-status": s.status },
          h("td", {}, STAGES[s.stage]),
          h("td", {}, s.status.replace("_", " ")),
          h("td", { class: "num" }, s.seconds === null ? "" : formatDuration(s.seconds)),
          h("td", { class: "muted" }, s.message),
        ),
      ),
    ),
  );
}

function figure(term: string, testid: string, value: string): HTMLElement[] {
  return [h("dt", {}, term), h("dd", { "data-testid": testid }, value)];
}
