// The Add pane against a mocked Rust side: drafts show their capture check, a drop event and
// window.kiln.addSources take the same path (add_sources, then check_draft), rejected items and
// rejected commands show their messages, Start sends the chosen options.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { Added } from "./bindings";
import { checkReport, draft, fire, jobRow, one, photo, start, until } from "./test/support";

afterEach(() => clearMocks());

const REPORT = checkReport(
  [
    photo("IMG_1.jpg", "good"),
    photo("IMG_2.jpg", "warn", [{ verdict: "warn", code: "blur", message: "slightly blurred (edge σ 1.8 px)" }]),
    photo("IMG_3.jpg", "reject", [
      { verdict: "reject", code: "unreadable", message: "cannot be decoded: truncated JPEG" },
    ]),
  ],
  "risky",
  ["1 photo is blurred: hold the camera still", "Photos cover the object all the way around"],
);

const ADDED: Added = { drafts: [draft()], rejected: [] };

describe("adding photos", () => {
  test("a draft shows each photo's verdict and reasons, the outcome, the advice and the left-out photos", async () => {
    const { backend } = await start({ add_sources: () => ADDED, check_draft: () => REPORT });
    await window.kiln?.addSources(["/home/me/photos/shoe"]);

    const card = one('.draft[data-draft-id="d1"]');
    const tiles = [...card.querySelectorAll<HTMLElement>('[data-testid="photo"]')];
    expect(tiles.map((t) => t.dataset.verdict)).toEqual(["good", "warn", "reject"]);
    expect(tiles[1]?.textContent).toContain("slightly blurred");
    expect(tiles[2]?.textContent).toContain("cannot be decoded: truncated JPEG");
    expect(one('[data-testid="outcome"]', card).dataset.outcome).toBe("risky");
    const advice = [...card.querySelectorAll('[data-testid="advice"] li')].map((li) => li.textContent);
    expect(advice).toEqual(REPORT.advice);
    expect(one('[data-testid="left-out"]', card).textContent).toContain("IMG_3.jpg: cannot be decoded");
    expect(one('[data-testid="left-out"]', card).textContent).not.toContain("IMG_2.jpg");

    await until(() => expect(one('[data-testid="estimate"]', card).textContent).toBe("Estimated time: about 4 min"));
    await until(() =>
      expect(
        backend
          .of("photo_thumbnail")
          .map((c) => c.args.index)
          .sort(),
      ).toEqual([0, 1, 2]),
    );
    await until(() => expect(one<HTMLImageElement>('[data-index="0"] img', card).src).toMatch(/^blob:/));
    expect(backend.of("estimate")[0]?.args).toEqual({
      draftId: "d1",
      options: { preset: "preview", formats: ["glb"], where: "local" },
    });
  });

  test("the drop handler sends the dropped paths to add_sources, then checks each draft", async () => {
    const two: Added = { drafts: [draft("d1", "shoe"), draft("d2", "mug")], rejected: [] };
    const { backend } = await start({ add_sources: () => two, check_draft: () => REPORT });
    await fire("tauri://drag-drop", {
      paths: ["/home/me/photos/shoe", "/home/me/mug.zip"],
      position: { x: 10, y: 20 },
    });

    await until(() => expect(backend.of("check_draft")).toHaveLength(2));
    expect(backend.of("add_sources")).toEqual([
      { cmd: "add_sources", args: { paths: ["/home/me/photos/shoe", "/home/me/mug.zip"] } },
    ]);
    const order = backend.calls.map((c) => c.cmd).filter((cmd) => cmd === "add_sources" || cmd === "check_draft");
    expect(order).toEqual(["add_sources", "check_draft", "check_draft"]);
    expect(
      backend
        .of("check_draft")
        .map((c) => c.args.draftId)
        .sort(),
    ).toEqual(["d1", "d2"]);
    await until(() =>
      expect(document.querySelectorAll('[data-testid="draft"] [data-testid="outcome"]')).toHaveLength(2),
    );
  });

  test("a drag over the window highlights the drop zone until it leaves", async () => {
    await start();
    await fire("tauri://drag-enter", { paths: ["/x"], position: { x: 1, y: 1 } });
    await until(() => expect(one("#drop-zone").classList.contains("hover")).toBe(true));
    await fire("tauri://drag-leave", null);
    await until(() => expect(one("#drop-zone").classList.contains("hover")).toBe(false));
  });

  test("a rejected add_sources shows its AppError message, dismissable, and the app goes on", async () => {
    const { backend } = await start({
      add_sources: () => Promise.reject({ class: "bad_input", message: "the ZIP expands past 8 GB: bomb.zip" }),
    });
    await window.kiln?.addSources(["/home/me/bomb.zip"]);

    const message = one('#messages [data-testid="message-error"]');
    expect(message.textContent).toContain("the ZIP expands past 8 GB: bomb.zip");
    expect(message.getAttribute("role")).toBe("alert");
    one<HTMLButtonElement>("button.dismiss", message).click();
    expect(document.querySelector("#messages .message")).toBeNull();
    expect(backend.of("check_draft")).toHaveLength(0);
    expect(document.querySelector('[data-testid="draft"]')).toBeNull();
  });

  test("dropped items that are not folders, ZIPs or photos show their reasons", async () => {
    const added: Added = {
      drafts: [],
      rejected: [
        { path: "/home/me/notes.txt", error: { class: "bad_input", message: "not a folder, ZIP or photo: notes.txt" } },
      ],
    };
    await start({ add_sources: () => added });
    await window.kiln?.addSources(["/home/me/notes.txt"]);
    expect(one("#messages").textContent).toContain("Not added: notes.txt: not a folder, ZIP or photo: notes.txt");
  });

  test("Start sends the chosen preset, formats and place, and the job joins the queue", async () => {
    const { backend } = await start({
      add_sources: () => ADDED,
      check_draft: () => REPORT,
      start_job: () => jobRow("j1", "queued"),
    });
    await window.kiln?.addSources(["/home/me/photos/shoe"]);
    const card = one('.draft[data-draft-id="d1"]');
    const preset = one<HTMLSelectElement>('[data-testid="preset"]', card);
    preset.value = "medium";
    preset.dispatchEvent(new Event("change", { bubbles: true }));
    one<HTMLInputElement>('[data-testid="formats"] input[value="usdz"]', card).checked = true;
    one<HTMLButtonElement>('[data-testid="start"]', card).click();

    await until(() => expect(backend.of("start_job")).toHaveLength(1));
    expect(backend.of("start_job")[0]?.args).toEqual({
      draftId: "d1",
      options: { preset: "medium", formats: ["glb", "usdz"], where: "local" },
    });
    await until(() => expect(document.querySelector('#queue li[data-job-id="j1"]')).not.toBeNull());
    expect(document.querySelector('[data-draft-id="d1"]')).toBeNull();
  });

  test("Add folder… takes a typed path down the same path as a drop", async () => {
    const { backend } = await start({ add_sources: () => ADDED, check_draft: () => REPORT });
    const toggle = one<HTMLButtonElement>("#add-folder");
    toggle.click();
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    one<HTMLInputElement>("#add-path").value = "  /home/me/photos/shoe ";
    one<HTMLFormElement>("#add-path-form").requestSubmit();
    await until(() => expect(backend.of("check_draft")).toHaveLength(1));
    expect(backend.of("add_sources")[0]?.args).toEqual({ paths: ["/home/me/photos/shoe"] });
  });

  test("a set that will fail cannot be started", async () => {
    await start({ add_sources: () => ADDED, check_draft: () => ({ ...REPORT, outcome: "will_fail" }) });
    await window.kiln?.addSources(["/home/me/photos/shoe"]);
    expect(one<HTMLButtonElement>('[data-testid="start"]').disabled).toBe(true);
    expect(one('[data-testid="outcome"]').textContent).toContain("Will fail");
  });
});
