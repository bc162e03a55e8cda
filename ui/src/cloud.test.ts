// The Cloud account pane against a mocked Rust side: signed out, the server and Sign in; while the
// browser is open, "waiting for your browser…" and the page's address; signed in, who, where the
// login is kept, the balance, the ledger, the packs (Buy waits for `cloud-changed`), API keys (the
// secret shown once with Copy, revoke after a confirmation), Sign out; the Add pane's cloud choice
// follows the sign-in; a network failure is shown in the pane, in words, with a way to retry.

import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import type { Added, CloudKey, CloudLedgerPage, CloudPack, CloudStatus } from "./bindings";
import { KEY_SCOPES, LEDGER_PAGE, money } from "./cloud";
import { INFO, SIGNED_OUT, checkReport, deferred, draft, fire, one, photo, start, until } from "./test/support";

afterEach(() => clearMocks());

const SIGNED_IN: CloudStatus = {
  server: "https://kiln.example",
  account: {
    email: "ada@example.com",
    role: "owner",
    organisation: "Acme Scans",
    organisation_id: "0190a0a0-0000-7000-8000-000000000001",
    scopes: ["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"],
    balance: { available: 1000, reserved: 8, debt: 0 },
  },
  kept_in: "the file /home/me/.config/kiln/credentials.json (readable by you alone)",
  keyring_problem: "no Secret Service on the session bus",
};

const LEDGER: CloudLedgerPage = {
  entries: [
    {
      id: "t2",
      created_at: "2026-01-02T10:00:00+00:00",
      reason: "reserve",
      job_id: "j1",
      note: null,
      available: -8,
      reserved: 8,
      debt: 0,
      balance_after: { available: 1000, reserved: 8, debt: 0 },
    },
    {
      id: "t1",
      created_at: "2026-01-01T10:00:00+00:00",
      reason: "grant",
      job_id: null,
      note: "signup credits",
      available: 1008,
      reserved: 0,
      debt: 0,
      balance_after: { available: 1008, reserved: 0, debt: 0 },
    },
  ],
  next: null,
};

const PACKS: CloudPack[] = [
  { id: "pack_100", credits: 100, amount: 1000, currency: "eur" },
  { id: "pack_500", credits: 500, amount: 4500, currency: "eur" },
];

function key(id: string, name: string, fields: Partial<CloudKey> = {}): CloudKey {
  return {
    id,
    name,
    prefix: `kiln_live_${id}`,
    scopes: ["jobs:read", "jobs:write"],
    mode: "live",
    created_at: "2026-01-01T10:00:00+00:00",
    expires_at: null,
    last_used_at: null,
    revoked_at: null,
    active: true,
    ...fields,
  };
}

/** The account's commands, answered for a signed-in app. */
const ACCOUNT = {
  cloud_status: () => SIGNED_IN,
  cloud_ledger: () => LEDGER,
  cloud_packs: () => PACKS,
  cloud_keys: () => [key("k1", "ci")],
};

const pane = () => one("#cloud-pane");
const testid = (id: string) => one(`[data-testid="${id}"]`, pane());

describe("the cloud pane", () => {
  test("signed out: the server and Sign in; waiting for the browser; then who and the balance", async () => {
    const login = deferred<CloudStatus>();
    let status = SIGNED_OUT;
    const { backend } = await start({
      cloud_status: () => status,
      cloud_login: () => login.promise,
      cloud_ledger: () => LEDGER,
      cloud_packs: () => PACKS,
      cloud_keys: () => [],
    });
    await until(() => expect(testid("cloud-server").textContent).toBe("Server: https://kiln.example"));
    expect(pane().textContent).toContain("Not signed in");
    expect(pane().querySelector('[data-testid="cloud-waiting"]')).toBeNull();

    one<HTMLButtonElement>("#cloud-sign-in").click();
    await until(() => expect(testid("cloud-waiting").textContent).toContain("Waiting for your browser"));
    expect(one<HTMLButtonElement>("#cloud-sign-in").disabled).toBe(true);
    await fire("cloud-login-url", "https://kiln.example/oauth/authorize?client_id=kiln-desktop");
    await until(() =>
      expect(testid("cloud-login-url").textContent).toBe("https://kiln.example/oauth/authorize?client_id=kiln-desktop"),
    );

    status = SIGNED_IN;
    login.resolve(SIGNED_IN);
    await until(() => expect(testid("cloud-email").textContent).toBe("ada@example.com"));
    expect(pane().textContent).toContain("(owner)");
    expect(testid("cloud-organisation").textContent).toBe("Acme Scans");
    expect(testid("cloud-kept-in").textContent).toContain("credentials.json (readable by you alone)");
    expect(testid("cloud-available").textContent).toBe("1,000");
    expect(testid("cloud-reserved").textContent).toBe(" · 8 reserved");
    expect(pane().querySelector('[data-testid="cloud-waiting"]')).toBeNull();
    expect(backend.of("cloud_login")).toHaveLength(1);
    expect(backend.of("cloud_ledger")[0]?.args).toEqual({ after: null, limit: LEDGER_PAGE });
  });

  test("the ledger, the packs, and a purchase that lands", async () => {
    let status = SIGNED_IN;
    const { backend } = await start({ ...ACCOUNT, cloud_status: () => status, cloud_buy: () => ({}) });
    await until(() => expect(pane().querySelectorAll('[data-testid="cloud-ledger"] tbody tr')).toHaveLength(2));
    const rows = [...pane().querySelectorAll('[data-testid="cloud-ledger"] tbody tr')].map((tr) =>
      [...tr.querySelectorAll("td")].slice(1).map((td) => td.textContent),
    );
    expect(rows).toEqual([
      ["Reserved for a job", "-8", "+8", "1,000"],
      ["Granted (signup credits)", "+1,008", "0", "1,008"],
    ]);
    const packs = [...pane().querySelectorAll("[data-pack-id]")].map((li) => li.textContent);
    expect(packs[0]).toContain(`100 credits for ${money(1000, "eur")}`);
    expect(packs).toHaveLength(2);

    one<HTMLButtonElement>('[data-testid="cloud-buy-pack_500"]').click();
    await until(() => expect(testid("cloud-payment-waiting").textContent).toContain("Waiting for the payment"));
    expect(backend.of("cloud_buy")[0]?.args).toEqual({ pack: "pack_500" });

    // Stripe confirmed: the Rust side says the account changed; the new balance shows.
    status = { ...SIGNED_IN, account: { ...SIGNED_IN.account!, balance: { available: 1500, reserved: 8, debt: 0 } } };
    await fire("cloud-changed", null);
    await until(() => expect(testid("cloud-available").textContent).toBe("1,500"));
    expect(pane().querySelector('[data-testid="cloud-payment-waiting"]')).toBeNull();
  });

  test("a new key's secret is shown once with Copy; keys are listed without secrets; revoke asks first", async () => {
    let keys = [key("k1", "ci")];
    const { backend } = await start({
      ...ACCOUNT,
      cloud_keys: () => keys,
      cloud_key_create: (args) => {
        const made = key("k2", args.name as string);
        keys = [made, ...keys];
        return { key: made, secret: "kiln_live_k2SECRETSECRET" };
      },
      cloud_key_revoke: (args) => {
        keys = keys.map((k) => (k.id === args.id ? { ...k, active: false, revoked_at: "2026-01-03T00:00:00Z" } : k));
        return keys.find((k) => k.id === args.id);
      },
    });
    await until(() => expect(pane().querySelectorAll("[data-key-id]")).toHaveLength(1));

    one<HTMLInputElement>("#cloud-key-name").value = "shop";
    one<HTMLFormElement>("#cloud-key-form").requestSubmit();
    const secret = () => one<HTMLInputElement>('[data-testid="cloud-key-secret"]').value;
    await until(() => expect(secret()).toBe("kiln_live_k2SECRETSECRET"));
    expect(backend.of("cloud_key_create")[0]?.args).toEqual({ name: "shop", scopes: KEY_SCOPES });
    expect(pane().textContent).toContain("never shown again");
    const list = one('[data-testid="cloud-keys"]');
    expect(list.querySelectorAll("[data-key-id]")).toHaveLength(2);
    expect(list.textContent).not.toContain("SECRET");
    expect(one('[data-key-id="k2"]').textContent).toContain("kiln_live_k2…");

    // Copy puts the secret on the clipboard.
    let copied = "";
    Object.defineProperty(navigator, "clipboard", {
      value: { writeText: (text: string) => ((copied = text), Promise.resolve()) },
      configurable: true,
    });
    one<HTMLButtonElement>('[data-testid="cloud-key-copy"]').click();
    await until(() => expect(copied).toBe("kiln_live_k2SECRETSECRET"));

    // Shown once: a refresh of the pane leaves it out.
    one<HTMLButtonElement>('[data-testid="cloud-refresh"]').click();
    await until(() => expect(pane().querySelector('[data-testid="cloud-key-secret"]')).toBeNull());
    expect(pane().textContent).not.toContain("SECRET");

    // Revoke: Cancel does nothing; Revoke revokes, and the key shows as revoked.
    one<HTMLButtonElement>('[data-key-id="k1"] [data-action="revoke"]').click();
    const dialog = one<HTMLDialogElement>("#confirm");
    await until(() => expect(dialog.open).toBe(true));
    expect(dialog.textContent).toContain("kiln_live_k1… stops working at once");
    one<HTMLButtonElement>('[data-testid="confirm-no"]', dialog).click();
    await until(() => expect(dialog.open).toBe(false));
    expect(backend.of("cloud_key_revoke")).toHaveLength(0);
    one<HTMLButtonElement>('[data-key-id="k1"] [data-action="revoke"]').click();
    await until(() => expect(dialog.open).toBe(true));
    one<HTMLButtonElement>('[data-testid="confirm-yes"]', dialog).click();
    await until(() => expect(one('[data-key-id="k1"]').dataset.state).toBe("revoked"));
    expect(backend.of("cloud_key_revoke")[0]?.args).toEqual({ id: "k1" });
    expect(one('[data-key-id="k1"]').querySelector('[data-action="revoke"]')).toBeNull();
  });

  test("sign-in and sign-out: the Add pane's cloud choice follows", async () => {
    const added: Added = { drafts: [draft()], rejected: [] };
    const report = checkReport([photo("IMG_1.jpg", "good")], "good", []);
    let status = SIGNED_OUT;
    const { backend } = await start({
      ...ACCOUNT,
      cloud_status: () => status,
      app_info: () => ({ ...INFO, offline: status.account === null }),
      cloud_login: () => ((status = SIGNED_IN), SIGNED_IN),
      cloud_logout: () => ((status = SIGNED_OUT), SIGNED_OUT),
      add_sources: () => added,
      check_draft: () => report,
    });
    await window.kiln?.addSources(["/home/me/photos/shoe"]);
    const cloudChoice = () => one<HTMLInputElement>('.draft [data-testid="where"] input[value="cloud"]');
    expect(cloudChoice().disabled).toBe(true);

    one<HTMLButtonElement>("#cloud-sign-in").click();
    await until(() => expect(cloudChoice().disabled).toBe(false));
    cloudChoice().click();
    expect(cloudChoice().checked).toBe(true);

    one<HTMLButtonElement>("#cloud-sign-out").click();
    await until(() => expect(cloudChoice().disabled).toBe(true));
    expect(one<HTMLInputElement>('.draft [data-testid="where"] input[value="local"]').checked).toBe(true);
    await until(() => expect(one<HTMLButtonElement>("#cloud-sign-in")).toBeTruthy());
    expect(backend.of("cloud_logout")).toHaveLength(1);
    expect(backend.of("app_info").length).toBeGreaterThanOrEqual(3);
  });

  test("another server in Settings: the pane shows its sign-in, never the old server's late answer", async () => {
    const old = deferred<CloudStatus>();
    const other: CloudStatus = { ...SIGNED_OUT, server: "http://127.0.0.1:8080" };
    const unreachable = { class: "busy", message: "cannot reach kiln.example: connection refused" };
    const answers = [() => Promise.reject(unreachable), () => old.promise, () => other];
    const { backend } = await start({
      ...ACCOUNT,
      cloud_status: () => (answers.shift() ?? (() => other))(),
      set_settings: (args) => args.settings,
    });
    // The old server is tried again and does not answer yet; meanwhile the user picks another.
    await until(() => expect(testid("cloud-error").hidden).toBe(false));
    one<HTMLButtonElement>('[data-testid="cloud-retry"]').click();
    one<HTMLButtonElement>("#open-settings").click();
    one<HTMLInputElement>("#settings-cloud").value = other.server;
    one<HTMLFormElement>("#settings form").requestSubmit();
    await until(() => expect(testid("cloud-server").textContent).toBe(`Server: ${other.server}`));
    expect(one<HTMLButtonElement>("#cloud-sign-in")).toBeTruthy();
    // The first server's answer arrives after the second's: it is about a server no longer used.
    old.resolve(SIGNED_IN);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(testid("cloud-server").textContent).toBe(`Server: ${other.server}`);
    expect(pane().querySelector('[data-testid="cloud-email"]')).toBeNull();
    expect(backend.of("cloud_status")).toHaveLength(3);
    expect(backend.of("cloud_ledger")).toHaveLength(0);
  });

  test("a network failure is said in the pane, with a way to try again", async () => {
    let reachable = false;
    const { backend } = await start({
      cloud_status: () =>
        reachable
          ? SIGNED_OUT
          : Promise.reject({
              class: "busy",
              message:
                "cannot reach kiln.example: connection refused. Check the network connection, or the cloud server in Settings",
            }),
    });
    await until(() => expect(testid("cloud-error").hidden).toBe(false));
    expect(testid("cloud-error").textContent).toContain("cannot reach kiln.example");
    expect(one("#messages").textContent).toBe("");
    reachable = true;
    one<HTMLButtonElement>('[data-testid="cloud-retry"]').click();
    await until(() => expect(one<HTMLButtonElement>("#cloud-sign-in")).toBeTruthy());
    expect(testid("cloud-error").hidden).toBe(true);
    expect(backend.of("cloud_status")).toHaveLength(2);
  });

  test("a refused sign-in is said, and Sign in can be pressed again", async () => {
    await start({
      cloud_login: () =>
        Promise.reject({ class: "busy", message: "no answer from the browser in time: press Sign in to try again" }),
    });
    await until(() => expect(one<HTMLButtonElement>("#cloud-sign-in").disabled).toBe(false));
    one<HTMLButtonElement>("#cloud-sign-in").click();
    await until(() => expect(testid("cloud-error").textContent).toContain("no answer from the browser in time"));
    expect(one<HTMLButtonElement>("#cloud-sign-in").disabled).toBe(false);
    expect(pane().querySelector('[data-testid="cloud-waiting"]')).toBeNull();
  });
});

describe("money", () => {
  test("minor units in each currency's own decimals", () => {
    expect(money(1000, "eur")).toMatch(/10[.,]00/);
    expect(money(1000, "jpy")).toMatch(/1,?000/);
    expect(money(1000, "jpy")).not.toMatch(/10[.,]00/);
  });
});
