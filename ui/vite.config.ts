// Vite for the Kiln app's web front end: a relative base so the built files load from Tauri's
// own protocol in the installed app, the dev server on the fixed port Tauri's devUrl names, and
// Vitest's DOM environment for the UI tests.

import { defineConfig } from "vitest/config";

/** The dev server's port: Tauri's conventional one, fixed (strictPort) so devUrl never drifts. */
const DEV_PORT = 1420;

export default defineConfig({
  base: "./",
  clearScreen: false,
  server: { port: DEV_PORT, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The webview is WebKitGTK 2.40+ (Debian 12), WebView2 or WKWebView: all take ES2022.
    target: "es2022",
  },
  test: {
    environment: "happy-dom",
    include: ["src/**/*.test.ts"],
  },
});
