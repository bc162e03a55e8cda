// Building elements without a framework: `h` creates an element with attributes and children
// (text always as text nodes, never parsed as HTML: paths and messages come from outside), and
// `confirmDialog` asks a yes/no question in the page's one modal <dialog>.

/** Attribute values; `false`, `null` and `undefined` leave the attribute out, `true` sets it empty. */
export type Attrs = Record<string, string | number | boolean | null | undefined>;

export type Child = Node | string | null | undefined | false;

/** `<tag attrs…>children…</tag>`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** Appends children, skipping the empty ones. */
export function append(parent: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child);
  }
}

/** Replaces `parent`'s children, skipping the empty ones. */
export function fill(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** A button that runs `action` on click (Enter and Space included, as buttons do). */
export function button(label: string, attrs: Attrs, action: () => void): HTMLButtonElement {
  const element = h("button", { type: "button", ...attrs }, label);
  element.addEventListener("click", action);
  return element;
}

/** The element with this id, of this type; a missing one is a bug in index.html. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`index.html has no #${id} of the expected kind`);
  return element;
}

/** Asks a question in `#confirm`; resolves true only when the user chose `yes`. Escape, the
 * cancel button or closing the dialog answer no. */
export function confirmDialog(question: string, detail: string, yes: string): Promise<boolean> {
  const dialog = byId("confirm", HTMLDialogElement);
  const yesButton = h("button", { type: "button", class: "danger", "data-testid": "confirm-yes" }, yes);
  const noButton = h("button", { type: "button", "data-testid": "confirm-no" }, "Cancel");
  dialog.replaceChildren(
    h("h2", { id: "confirm-title" }, question),
    h("p", {}, detail),
    h("div", { class: "actions" }, noButton, yesButton),
  );
  dialog.setAttribute("aria-labelledby", "confirm-title");
  return new Promise((resolve) => {
    const finish = (answer: boolean) => {
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onClose = () => finish(false);
    yesButton.addEventListener("click", () => finish(true));
    noButton.addEventListener("click", () => finish(false));
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    noButton.focus();
  });
}

/** A <select> of a label table's values, `value` selected. */
export function selectBox<K extends string>(table: Record<K, string>, value: K, attrs: Attrs): HTMLSelectElement {
  const select = h("select", attrs);
  for (const [key, label] of Object.entries<string>(table)) {
    select.append(h("option", { value: key, selected: key === value }, label));
  }
  select.value = value;
  return select;
}

/** A group of checkboxes, one per value of a label table, with those of `checked` ticked. */
export interface CheckboxGroup<K extends string> {
  element: HTMLFieldSetElement;
  values: () => K[];
}

export function checkboxGroup<K extends string>(
  legend: string,
  table: Record<K, string>,
  checked: readonly K[],
  attrs: Attrs,
): CheckboxGroup<K> {
  const element = h("fieldset", { class: "checks", ...attrs }, h("legend", {}, legend));
  const boxes: [K, HTMLInputElement][] = [];
  for (const [key, label] of Object.entries<string>(table)) {
    const box = h("input", { type: "checkbox", value: key, checked: checked.includes(key as K) });
    boxes.push([key as K, box]);
    element.append(h("label", {}, box, ` ${label}`));
  }
  return { element, values: () => boxes.filter(([, box]) => box.checked).map(([key]) => key) };
}

/** A group of radio buttons, one per value of a label table. */
export interface RadioGroup<K extends string> {
  element: HTMLFieldSetElement;
  value: () => K;
}

export function radioGroup<K extends string>(
  legend: string,
  name: string,
  table: Record<K, string>,
  value: K,
  attrs: Attrs,
): RadioGroup<K> {
  const element = h("fieldset", { class: "radios", ...attrs }, h("legend", {}, legend));
  const radios: [K, HTMLInputElement][] = [];
  for (const [key, label] of Object.entries<string>(table)) {
    const radio = h("input", { type: "radio", name, value: key, checked: key === value });
    radios.push([key as K, radio]);
    element.append(h("label", {}, radio, ` ${label}`));
  }
  return { element, value: () => radios.find(([, radio]) => radio.checked)?.[0] ?? value };
}
