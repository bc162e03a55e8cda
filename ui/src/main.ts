// The Kiln desktop app's web front end, started by index.html.
//
// No framework, on purpose: the UI is a handful of panes (add and check, queue, preview, export,
// settings) whose live parts are a few elements each — a progress bar, a stage line, an ETA, a
// frame — updated in place as events arrive; a virtual DOM would re-render to change what one
// assignment changes. Plain TypeScript modules over the DOM keep the bundle a few tens of kB,
// make the first paint immediate in the webview, need no compiler plugin, and build in seconds on
// two cores. Each module owns one pane (add.ts, queue.ts, preview.ts, export.ts, settings.ts);
// ipc.ts is the only one that talks to the Rust side, through types generated from it (bindings/).

import "./styles.css";
import { startApp } from "./app";
import { showError } from "./messages";

startApp().catch((error: unknown) => showError("The app could not start", error));
