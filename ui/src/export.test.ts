// The Export pane against a mocked Rust side: the chosen formats and folder go to export_job, and
// the written files come back with their sizes, validator results and the preset's budget.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { ExportResult } from "./bindings";
import { jobReport, jobRow, one, start, until } from "./test/support";

afterEach(() => clearMocks());

const RESULT: ExportResult = {
  files: [
    {
      path: "/tmp/out/shoe.glb",
      format: "glb",
      bytes: 1_234_567,
      validator: { name: "gltf-validator", passed: true, summary: "0 errors, 0 warnings" },
    },
    {
      path: "/tmp/out/shoe.usdz",
      format: "usdz",
      bytes: 2_500_000,
      validator: { name: "usdchecker --arkit", passed: false, summary: "missing default prim" },
    },
    { path: "/tmp/out/shoe.obj", format: "obj", bytes: 800, validator: null },
  ],
  max_triangles: 24000,
  texture_size: 1024,
};

describe("export", () => {
  test("sends the formats and folder, then shows sizes, validator results and the budget", async () => {
    const { backend } = await start({
      list_jobs: () => [jobRow("j1", "done")],
      job_report: () => jobReport("j1"),
      export_job: () => RESULT,
      reveal_export: () => null,
    });
    one("#queue li").click();
    await until(() => expect(one<HTMLFieldSetElement>("#export-fields").disabled).toBe(false));
    expect(one("#export-budget").textContent).toContain("23,456 triangles, 1024² texture");
    const folder = one<HTMLInputElement>("#export-folder");
    expect(folder.value).toBe("/home/me/Kiln/exports");
    folder.value = "/tmp/out";
    for (const format of ["usdz", "obj"])
      one<HTMLInputElement>(`#export-formats input[value="${format}"]`).checked = true;
    one<HTMLFormElement>("#export-form").requestSubmit();

    await until(() => expect(one("#export-results").querySelectorAll("tr")).toHaveLength(3));
    expect(backend.of("export_job")).toEqual([
      { cmd: "export_job", args: { jobId: "j1", formats: ["glb", "usdz", "obj"], folder: "/tmp/out" } },
    ]);
    const rows = [...one("#export-results").querySelectorAll<HTMLElement>("tr")];
    expect(rows[0]?.textContent).toContain("shoe.glb");
    expect(rows[0]?.textContent).toContain("1.2 MB");
    const validators = [...document.querySelectorAll<HTMLElement>('#export-results [data-testid="validator"]')];
    expect(validators.map((v) => v.dataset.passed)).toEqual(["true", "false", ""]);
    expect(validators[0]?.textContent).toBe("✓ gltf-validator: 0 errors, 0 warnings");
    expect(validators[1]?.textContent).toBe("✗ usdchecker --arkit: missing default prim");
    expect(validators[2]?.textContent).toBe("not validated");
    expect(one("#export-budget").textContent).toBe(
      "Budget of the preview preset: at most 24,000 triangles, 1024² texture.",
    );

    one<HTMLButtonElement>('[data-testid="export-reveal"]').click();
    // The folder the files went to, not the job's own.
    await until(() =>
      expect(backend.of("reveal_export")).toEqual([{ cmd: "reveal_export", args: { folder: "/tmp/out" } }]),
    );
  });

  test("an unwritable folder shows the AppError message and the pane stays usable", async () => {
    await start({
      list_jobs: () => [jobRow("j1", "done")],
      job_report: () => jobReport("j1"),
      export_job: () =>
        Promise.reject({ class: "bad_input", message: "cannot write into /root/out: permission denied" }),
    });
    one("#queue li").click();
    await until(() => expect(one<HTMLFieldSetElement>("#export-fields").disabled).toBe(false));
    one<HTMLFormElement>("#export-form").requestSubmit();
    await until(() => expect(one("#messages").textContent).toContain("cannot write into /root/out: permission denied"));
    expect(one<HTMLButtonElement>("#export-run").disabled).toBe(false);
  });
});
