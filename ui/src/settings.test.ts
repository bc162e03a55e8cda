// The Settings dialog against a mocked Rust side: it shows the stored settings and the adapter,
// and Save sends what was chosen to set_settings; the export pane then uses the new folder.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { AppSettings } from "./bindings";
import { INFO, one, SETTINGS, start, until } from "./test/support";

afterEach(() => clearMocks());

describe("settings", () => {
  test("shows the stored settings and the adapter; Save sends the new ones", async () => {
    const { backend } = await start({
      app_info: () => ({ ...INFO, adapter: "AMD Radeon RX 7600 (RADV NAVI33)" }),
      set_settings: (args) => args.settings,
    });
    one<HTMLButtonElement>("#open-settings").click();
    const dialog = one<HTMLDialogElement>("#settings");
    expect(dialog.open).toBe(true);
    expect(dialog.textContent).toContain("GPU found: AMD Radeon RX 7600 (RADV NAVI33)");
    expect(one<HTMLSelectElement>("#settings-preset").value).toBe("preview");
    expect(one<HTMLInputElement>("#settings-output").value).toBe(SETTINGS.output_folder);

    one<HTMLSelectElement>("#settings-device").value = "cpu";
    one<HTMLSelectElement>("#settings-preset").value = "full";
    one<HTMLInputElement>('[data-testid="settings-formats"] input[value="ply"]').checked = true;
    one<HTMLInputElement>("#settings-output").value = "/data/models";
    one<HTMLFormElement>("form", dialog).requestSubmit();

    await until(() => expect(dialog.open).toBe(false));
    const sent = backend.of("set_settings")[0]?.args.settings as AppSettings;
    expect(sent).toEqual({
      ...SETTINGS,
      device: "cpu",
      preset: "full",
      formats: ["glb", "ply"],
      output_folder: "/data/models",
    });
    expect(one<HTMLInputElement>("#export-folder").value).toBe("/data/models");
  });

  test("a refused save keeps the dialog open and shows why", async () => {
    await start({
      set_settings: () => Promise.reject({ class: "bad_input", message: "the output folder does not exist: /nope" }),
    });
    one<HTMLButtonElement>("#open-settings").click();
    one<HTMLFormElement>("#settings form").requestSubmit();
    await until(() => expect(one("#messages").textContent).toContain("the output folder does not exist: /nope"));
    expect(one<HTMLDialogElement>("#settings").open).toBe(true);
  });
});
