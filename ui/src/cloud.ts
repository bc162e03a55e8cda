// The Cloud account pane (`#cloud-pane`): signed out, the server and "Sign in" (the system browser,
// the CLI's own login); while the browser is open, "waiting for your browser…" with the page's
// address in case none opened; signed in, who (email, role, organisation), where the login is
// kept, the balance, the recent ledger, the credit packs with Buy (Stripe Checkout in the
// browser, then "waiting for the payment" until `cloud-changed` says it landed), the API keys
// (create with a name → the secret shown once with Copy and a warning; revoke after a
// confirmation), and "Sign out". Errors (no network, a refused sign-in) are shown in the pane
// itself, in words, with the controls still usable. `onChanged` tells the app the sign-in changed,
// so the Add pane's cloud choice follows.

import type { CloudAccount, CloudCreatedKey, CloudKey, CloudLedgerEntry, CloudPack, CloudStatus } from "./bindings";
import { button, byId, confirmDialog, fill, h } from "./dom";
import { formatCount } from "./format";
import * as ipc from "./ipc";

/** Ledger transactions shown: the most recent ones; "More" reads the next page. */
export const LEDGER_PAGE = 10;

/** What a key made here may do: submit and follow jobs (what a script or CI needs), as
 * `kiln keys create` grants by default; managing keys stays with people. */
export const KEY_SCOPES = ["jobs:read", "jobs:write"];

/** Words for the ledger's reasons. */
const REASONS: Record<string, string> = {
  purchase: "Purchase",
  subscription: "Subscription",
  studio: "Studio purchase",
  grant: "Granted",
  revoke: "Taken back",
  reserve: "Reserved for a job",
  capture: "Spent on a job",
  release: "Released by a job",
  refund: "Refunded",
};

export interface CloudDeps {
  /** The sign-in changed (in or out): the app re-reads its info. */
  onChanged: () => void;
}

export class CloudPane {
  private readonly body = byId("cloud-body", HTMLElement);
  private readonly problem = byId("cloud-error", HTMLElement);
  private status: CloudStatus | null = null;
  private ledger: CloudLedgerEntry[] = [];
  private ledgerNext: string | null = null;
  private packs: CloudPack[] = [];
  private keys: CloudKey[] = [];
  private loginUrl: string | null = null;
  private waiting: "browser" | "payment" | null = null;
  /** Loads started: the latest is the one whose answers are shown. */
  private loads = 0;

  constructor(private readonly deps: CloudDeps) {}

  /** Reads the sign-in and, when signed in, the account's ledger, packs and keys. A load that a
   * later one overtook (the server changed in Settings meanwhile) shows nothing: its answers are
   * about the old server. */
  async load(): Promise<void> {
    const load = ++this.loads;
    this.showProblem(null);
    let status: CloudStatus;
    try {
      status = await ipc.cloudStatus();
    } catch (error) {
      if (load !== this.loads) return;
      this.showProblem(error);
      this.render();
      return;
    }
    if (load !== this.loads) return;
    this.status = status;
    if (status.account) await this.loadAccount(load);
    else this.render();
  }

  /** `cloud-changed`: a sign-in, a sign-out or a purchase landed. */
  async changed(): Promise<void> {
    if (this.waiting === "payment") this.waiting = null;
    await this.load();
  }

  /** `cloud-login-url`: the sign-in page the browser was asked to open. */
  loginOpened(url: string): void {
    this.loginUrl = url;
    if (this.waiting === "browser") this.render();
  }

  private async loadAccount(load: number): Promise<void> {
    const [ledger, packs, keys] = await Promise.allSettled([
      ipc.cloudLedger(null, LEDGER_PAGE),
      ipc.cloudPacks(),
      ipc.cloudKeys(),
    ]);
    if (load !== this.loads) return;
    const failed = [ledger, packs, keys].find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) this.showProblem(failed.reason);
    this.ledger = ledger.status === "fulfilled" ? ledger.value.entries : [];
    this.ledgerNext = ledger.status === "fulfilled" ? ledger.value.next : null;
    this.packs = packs.status === "fulfilled" ? packs.value : [];
    this.keys = keys.status === "fulfilled" ? keys.value : [];
    this.render();
  }

  private render(): void {
    const status = this.status;
    if (!status) {
      fill(this.body, button("Try again", { "data-testid": "cloud-retry" }, () => void this.load()));
      return;
    }
    if (!status.account) {
      fill(this.body, ...this.signedOut(status));
      return;
    }
    fill(
      this.body,
      whoView(status, status.account),
      this.balanceView(status.account),
      this.ledgerView(),
      this.packsView(this.packs),
      this.keysView(this.keys),
      h(
        "div",
        { class: "row" },
        h("span", { class: "spacer" }),
        button("Refresh", { "data-testid": "cloud-refresh" }, () => void this.load()),
        button("Sign out", { id: "cloud-sign-out", "data-testid": "cloud-sign-out" }, () => void this.signOut()),
      ),
    );
  }

  private signedOut(status: CloudStatus): HTMLElement[] {
    const signIn = button(
      "Sign in",
      { id: "cloud-sign-in", "data-testid": "cloud-sign-in", class: "primary", disabled: this.waiting === "browser" },
      () => void this.signIn(),
    );
    const parts = [
      h("p", {}, "Not signed in. Kiln works fully on this machine; sign in to run jobs in the cloud."),
      h("p", { class: "muted small", "data-testid": "cloud-server" }, `Server: ${status.server}`),
      h("div", { class: "row" }, signIn),
    ];
    if (this.waiting === "browser") {
      parts.push(
        h(
          "p",
          { "data-testid": "cloud-waiting", role: "status" },
          "Waiting for your browser… sign in there, then come back.",
        ),
      );
      if (this.loginUrl) {
        parts.push(
          h(
            "p",
            { class: "muted small" },
            "If no browser opened, visit: ",
            h("code", { class: "url", "data-testid": "cloud-login-url" }, this.loginUrl),
          ),
        );
      }
    }
    return parts;
  }

  private balanceView(account: CloudAccount): HTMLElement {
    const balance = account.balance;
    const paying = this.waiting === "payment";
    return h(
      "section",
      { class: "cloud-balance", "aria-label": "Credits" },
      balance
        ? h(
            "p",
            {},
            h("strong", { "data-testid": "cloud-available" }, formatCount(balance.available)),
            " credits available",
            h(
              "span",
              { class: "muted", "data-testid": "cloud-reserved" },
              ` · ${formatCount(balance.reserved)} reserved`,
            ),
            balance.debt > 0 && h("span", { class: "error-text" }, ` · ${formatCount(balance.debt)} owed`),
          )
        : h("p", { class: "muted" }, "This login may not read the credits."),
      paying &&
        h(
          "p",
          { "data-testid": "cloud-payment-waiting", role: "status" },
          "Waiting for the payment in your browser… the balance updates once Stripe confirms it.",
        ),
    );
  }

  private ledgerView(): HTMLElement {
    const rows = this.ledger.map((entry) =>
      h(
        "tr",
        { "data-ledger-id": entry.id },
        h("td", {}, formatTime(entry.created_at)),
        h(
          "td",
          {},
          REASONS[entry.reason] ?? entry.reason,
          entry.note && h("span", { class: "muted" }, ` (${entry.note})`),
        ),
        h("td", { class: "num" }, signed(entry.available)),
        h("td", { class: "num" }, signed(entry.reserved)),
        h("td", { class: "num" }, formatCount(entry.balance_after.available)),
      ),
    );
    return h(
      "details",
      { class: "cloud-ledger" },
      h("summary", {}, "Recent transactions"),
      rows.length === 0
        ? h("p", { class: "muted" }, "No transactions yet.")
        : h(
            "table",
            { "data-testid": "cloud-ledger" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "When"),
                h("th", { scope: "col" }, "What"),
                h("th", { scope: "col" }, "Available"),
                h("th", { scope: "col" }, "Reserved"),
                h("th", { scope: "col" }, "Balance"),
              ),
            ),
            h("tbody", {}, ...rows),
          ),
      this.ledgerNext &&
        button("More", { "data-testid": "cloud-ledger-more" }, () => void this.moreLedger()),
    );
  }

  private async moreLedger(): Promise<void> {
    if (!this.ledgerNext) return;
    try {
      const page = await ipc.cloudLedger(this.ledgerNext, LEDGER_PAGE);
      this.ledger = [...this.ledger, ...page.entries];
      this.ledgerNext = page.next;
      this.render();
    } catch (error) {
      this.showProblem(error);
    }
  }

  private packsView(packs: CloudPack[]): HTMLElement {
    return h(
      "section",
      { class: "cloud-packs", "aria-labelledby": "cloud-packs-title" },
      h("h3", { id: "cloud-packs-title" }, "Buy credits"),
      packs.length === 0
        ? h("p", { class: "muted" }, "No credit packs on sale.")
        : h(
            "ul",
            { "data-testid": "cloud-packs" },
            ...packs.map((pack) =>
              h(
                "li",
                { class: "row", "data-pack-id": pack.id },
                h("span", { class: "grow" }, `${formatCount(pack.credits)} credits for ${packPrice(pack)}`),
                button("Buy", { "data-action": "buy", "data-testid": `cloud-buy-${pack.id}` }, () => {
                  void this.buy(pack);
                }),
              ),
            ),
          ),
    );
  }

  private keysView(keys: CloudKey[]): HTMLElement {
    const name = h("input", {
      id: "cloud-key-name",
      "data-testid": "cloud-key-name",
      type: "text",
      placeholder: "e.g. continuous integration",
      maxlength: 100,
      spellcheck: "false",
    });
    const form = h(
      "form",
      { id: "cloud-key-form", class: "row" },
      h("label", { class: "field grow" }, h("span", {}, "New key's name"), name),
      h("button", { type: "submit", "data-testid": "cloud-key-create" }, "Create key"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = name.value.trim();
      if (text) void this.createKey(text);
    });
    return h(
      "section",
      { class: "cloud-keys", "aria-labelledby": "cloud-keys-title" },
      h("h3", { id: "cloud-keys-title" }, "API keys"),
      h("p", { class: "muted small" }, "For scripts and CI (KILN_API_KEY): they may submit and follow jobs."),
      form,
      h("div", { id: "cloud-new-key" }),
      keys.length === 0
        ? h("p", { class: "muted" }, "No API keys.")
        : h("ul", { "data-testid": "cloud-keys" }, ...keys.map((key) => this.keyRow(key))),
    );
  }

  private keyRow(key: CloudKey): HTMLElement {
    const state = key.active ? "active" : key.revoked_at ? "revoked" : "expired";
    return h(
      "li",
      { class: "row", "data-key-id": key.id, "data-state": state },
      h("code", {}, `${key.prefix}…`),
      h("span", { class: "grow" }, key.name),
      h("span", { class: "muted small" }, key.scopes.join(" ")),
      h("span", { class: "badge", "data-testid": "cloud-key-state" }, state),
      key.active &&
        button("Revoke", { class: "quiet danger", "data-action": "revoke" }, () => void this.revokeKey(key)),
    );
  }

  private async signIn(): Promise<void> {
    this.showProblem(null);
    this.waiting = "browser";
    this.loginUrl = null;
    this.render();
    try {
      this.status = await ipc.cloudLogin();
      this.waiting = null;
      this.deps.onChanged();
      await this.load();
    } catch (error) {
      this.waiting = null;
      this.render();
      this.showProblem(error);
    }
  }

  private async signOut(): Promise<void> {
    this.showProblem(null);
    try {
      this.status = await ipc.cloudLogout();
      this.deps.onChanged();
      this.render();
    } catch (error) {
      this.showProblem(error);
    }
  }

  private async buy(pack: CloudPack): Promise<void> {
    this.showProblem(null);
    try {
      await ipc.cloudBuy(pack.id);
      this.waiting = "payment";
      await this.loadAccount(this.loads);
    } catch (error) {
      this.showProblem(error);
    }
  }

  private async createKey(name: string): Promise<void> {
    this.showProblem(null);
    try {
      const created = await ipc.cloudKeyCreate(name, KEY_SCOPES);
      await this.loadAccount(this.loads);
      byId("cloud-new-key", HTMLElement).replaceChildren(newKeyView(created));
    } catch (error) {
      this.showProblem(error);
    }
  }

  private async revokeKey(key: CloudKey): Promise<void> {
    const yes = await confirmDialog(
      `Revoke the key “${key.name}”?`,
      `${key.prefix}… stops working at once, for every script and machine that uses it. This cannot be undone.`,
      "Revoke",
    );
    if (!yes) return;
    this.showProblem(null);
    try {
      await ipc.cloudKeyRevoke(key.id);
      await this.loadAccount(this.loads);
    } catch (error) {
      this.showProblem(error);
    }
  }

  private showProblem(error: unknown): void {
    this.problem.hidden = error === null;
    this.problem.textContent = error === null ? "" : ipc.errorMessage(error);
  }
}

function whoView(status: CloudStatus, account: CloudAccount): HTMLElement {
  const who = account.email ?? "an API key of the organisation";
  return h(
    "section",
    { class: "cloud-who", "aria-label": "Signed in as" },
    h(
      "p",
      {},
      "Signed in as ",
      h("strong", { "data-testid": "cloud-email" }, who),
      account.role && h("span", { class: "muted" }, ` (${account.role})`),
      " in ",
      h("strong", { "data-testid": "cloud-organisation" }, account.organisation),
    ),
    h("p", { class: "muted small", "data-testid": "cloud-server" }, `Server: ${status.server}`),
    h("p", { class: "muted small", "data-testid": "cloud-kept-in" }, `Login kept in ${status.kept_in}`),
  );
}

/** The new key's secret, with Copy and the warning that it is shown this once. Nothing keeps it:
 * it lives in this element until the pane is redrawn. */
function newKeyView(created: CloudCreatedKey): HTMLElement {
  const secret = h("input", {
    type: "text",
    readonly: true,
    value: created.secret,
    "data-testid": "cloud-key-secret",
    "aria-label": `The secret of the key ${created.key.name}`,
    spellcheck: "false",
  });
  const copied = h("span", { class: "muted small", role: "status" });
  const copy = button("Copy", { "data-testid": "cloud-key-copy" }, () => {
    secret.select();
    navigator.clipboard.writeText(created.secret).then(
      () => (copied.textContent = "Copied."),
      () => (copied.textContent = "Could not copy: select the key and copy it yourself."),
    );
  });
  const done = button("Done", { "data-testid": "cloud-key-done" }, () => view.remove());
  const view = h(
    "div",
    { class: "card cloud-secret", role: "alert" },
    h("p", {}, h("strong", {}, `The key “${created.key.name}” — copy it now: it is never shown again.`)),
    h("div", { class: "row" }, secret, copy, done),
    copied,
  );
  return view;
}

/** `+100`, `-8`, `0`. */
function signed(n: number): string {
  return n > 0 ? `+${formatCount(n)}` : formatCount(n);
}

/** A ledger time in the user's locale, to the minute. */
function formatTime(rfc3339: string): string {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime())
    ? rfc3339
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function packPrice(pack: CloudPack): string {
  return money(pack.amount, pack.currency);
}

/** `amount` minor units of `currency` as people read it ("€10.00", "¥1,000"): Intl knows each
 * currency's decimals (none for JPY), so minor units are divided by the right power of ten. */
export function money(amount: number, currency: string): string {
  try {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(amount / 10 ** digits);
  } catch {
    return `${amount} ${currency.toUpperCase()} (minor units)`;
  }
}
