// The Watched folders pane against a mocked Rust side: the folders with their settings in words,
// picked up / waiting / failed counts and lists; Add sends only what was set (with the quiet
// period); Pause/Resume call pause_watched; Remove asks first; watched-changed replaces the list.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { WatchedFolder } from "./bindings";
import { fire, one, start, until } from "./test/support";
import { DEFAULT_QUIET_S, describeSettings } from "./watched";

afterEach(() => clearMocks());

function folder(id: string, fields: Partial<WatchedFolder> = {}): WatchedFolder {
  return {
    id,
    folder: `/home/me/inbox-${id}`,
    settings: { overrides: { preset: "preview", formats: ["glb"], train_steps: 300 }, quiet_s: 10 },
    paused: false,
    picked_up: [],
    waiting: [],
    failed: [],
    problem: null,
    ...fields,
  };
}

const card = (id: string) => one(`#watched li[data-watched-id="${id}"]`);
const text = (selector: string, root: ParentNode) => one(selector, root).textContent;

describe("watched folders", () => {
  test("each folder shows its settings, what was picked up, what waits and what failed", async () => {
    const busy = folder("w1", {
      picked_up: [
        { input: "/home/me/inbox-w1/mug", job_id: "7", state: "done" },
        { input: "/home/me/inbox-w1/broken", job_id: "8", state: "failed" },
      ],
      waiting: ["/home/me/inbox-w1/shoe"],
      failed: [
        {
          path: "/home/me/inbox-w1/broken",
          error: { class: "bad_input", message: "unknown field `quality`: /home/me/inbox-w1/broken/kiln.toml" },
        },
      ],
    });
    await start({ list_watched: () => [busy, folder("w2", { paused: true })] });

    expect(one("#watched-empty").hidden).toBe(true);
    expect(text('[data-testid="watch-settings"]', card("w1"))).toBe("Preview preset · GLB · 300 steps · quiet 10 s");
    expect(text('[data-testid="picked-up-count"]', card("w1"))).toBe("2 picked up");
    expect(text('[data-testid="waiting-count"]', card("w1"))).toBe("1 waiting");
    expect(text('[data-testid="failed-count"]', card("w1"))).toBe("1 failed");
    const picked = [...card("w1").querySelectorAll('[data-testid="picked-up-list"] li')].map((li) => li.textContent);
    expect(picked).toEqual(["mug — Done", "broken — Failed"]);
    expect(text('[data-testid="waiting-list"]', card("w1"))).toBe("shoe");
    expect(text('[data-testid="failed-list"]', card("w1"))).toContain("broken: unknown field `quality`");
    expect(card("w1").dataset.paused).toBe("false");
    expect(card("w1").querySelector('[data-action="pause"]')).not.toBeNull();
    expect(card("w2").dataset.paused).toBe("true");
    expect(card("w2").querySelector('[data-action="resume"]')).not.toBeNull();
    expect(card("w2").querySelector('[data-testid="waiting-list"]')).toBeNull();
  });

  test("Add sends the folder with only the settings that were set, and the quiet period", async () => {
    let watched: WatchedFolder[] = [];
    const { backend } = await start({
      list_watched: () => watched,
      add_watched: (args) => {
        watched = [folder("w1", { folder: args.folder as string })];
        return watched[0];
      },
    });
    expect(one("#watched-empty").hidden).toBe(false);
    one<HTMLButtonElement>("#watch-add").click();
    expect(one("#watch-form").hidden).toBe(false);
    expect(one<HTMLInputElement>("#watch-quiet").value).toBe(String(DEFAULT_QUIET_S));
    one<HTMLInputElement>("#watch-path").value = "/home/me/inbox";
    one<HTMLSelectElement>("#watch-preset").value = "full";
    one<HTMLInputElement>('[data-testid="watch-formats"] input[value="usdz"]').checked = true;
    one<HTMLInputElement>("#watch-quiet").value = "2.5";
    one<HTMLFormElement>("#watch-form").requestSubmit();

    await until(() => expect(document.querySelectorAll("#watched li[data-watched-id]")).toHaveLength(1));
    expect(backend.of("add_watched")[0]?.args).toEqual({
      folder: "/home/me/inbox",
      settings: { overrides: { preset: "full", formats: ["usdz"] }, quiet_s: 2.5 },
    });
    expect(one<HTMLInputElement>("#watch-path").value).toBe("");
  });

  test("a refused folder shows why and is kept in the field", async () => {
    await start({
      add_watched: () => Promise.reject({ class: "bad_input", message: "this folder is watched already: /in" }),
    });
    one<HTMLButtonElement>("#watch-add").click();
    one<HTMLInputElement>("#watch-path").value = "/in";
    one<HTMLFormElement>("#watch-form").requestSubmit();
    await until(() => expect(one("#messages").textContent).toContain("this folder is watched already: /in"));
    expect(one<HTMLInputElement>("#watch-path").value).toBe("/in");
  });

  test("Pause and Resume call pause_watched; Remove asks first", async () => {
    let paused = false;
    let watched = () => [folder("w1", { paused })];
    const { backend } = await start({
      list_watched: () => watched(),
      pause_watched: (args) => {
        paused = args.paused as boolean;
        return watched()[0];
      },
      remove_watched: () => {
        watched = () => [];
        return null;
      },
    });
    one<HTMLButtonElement>('[data-action="pause"]', card("w1")).click();
    await until(() => expect(card("w1").dataset.paused).toBe("true"));
    one<HTMLButtonElement>('[data-action="resume"]', card("w1")).click();
    await until(() => expect(card("w1").dataset.paused).toBe("false"));
    expect(backend.of("pause_watched").map((c) => c.args)).toEqual([
      { id: "w1", paused: true },
      { id: "w1", paused: false },
    ]);

    const dialog = one<HTMLDialogElement>("#confirm");
    one<HTMLButtonElement>('[data-action="remove"]', card("w1")).click();
    await until(() => expect(dialog.open).toBe(true));
    expect(dialog.textContent).toContain("the jobs made from them are not touched");
    one<HTMLButtonElement>('[data-testid="confirm-no"]', dialog).click();
    await until(() => expect(dialog.open).toBe(false));
    expect(backend.of("remove_watched")).toHaveLength(0);

    one<HTMLButtonElement>('[data-action="remove"]', card("w1")).click();
    await until(() => expect(dialog.open).toBe(true));
    one<HTMLButtonElement>('[data-testid="confirm-yes"]', dialog).click();
    await until(() => expect(document.querySelector("#watched li")).toBeNull());
    expect(backend.of("remove_watched")[0]?.args).toEqual({ id: "w1" });
  });

  test("watched-changed replaces the list, a problem included", async () => {
    await start({ list_watched: () => [folder("w1")] });
    const gone = { class: "internal" as const, message: "No such file or directory: /home/me/inbox-w1" };
    await fire("watched-changed", [folder("w1", { problem: gone, waiting: [] }), folder("w2")]);
    await until(() => expect(document.querySelectorAll("#watched li[data-watched-id]")).toHaveLength(2));
    expect(text('[data-testid="watch-problem"]', card("w1"))).toBe(gone.message);
  });

  test("settings not set follow the app's", () => {
    expect(describeSettings({ overrides: {}, quiet_s: 90 })).toEqual(["the app's preset", "quiet 1 min 30 s"]);
    expect(describeSettings({ overrides: { max_side: 100, until: "poses", device: "cpu" }, quiet_s: 0 })).toEqual([
      "the app's preset",
      "on cpu",
      "photos at 100 px",
      "until camera poses",
      "quiet 0 s",
    ]);
  });
});
