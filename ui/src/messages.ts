// The message area (`#messages`): every rejected command's AppError message, each dismissable.
// Errors never stop the app: they are shown here and the panes stay usable.

import { button, byId, h } from "./dom";
import { errorMessage } from "./ipc";

/** Shows what went wrong, prefixed by what the user was doing ("Could not start the job: …"). */
export function showError(context: string, error: unknown): void {
  show(`${context}: ${errorMessage(error)}`);
}

/** Runs `action`, showing its error under `context` instead of letting it escape. */
export async function guard<T>(context: string, action: () => Promise<T>): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    showError(context, error);
    return undefined;
  }
}

function show(text: string): void {
  const area = byId("messages", HTMLElement);
  const item = h(
    "div",
    { class: "message error", role: "alert", "data-testid": "message-error" },
    h("span", { class: "text" }, text),
  );
  item.append(
    button("×", { class: "dismiss", "aria-label": "Dismiss message", title: "Dismiss" }, () => item.remove()),
  );
  area.append(item);
}
