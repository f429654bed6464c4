/// <reference types="vitest/config" />
// The embedded web client's build. The output is committed under
// internal/webclient/dist and served by `luxchat serve` (go:embed); CI
// rebuilds it into a temporary directory and compares (see Makefile:
// web-check), so the build must be deterministic: no source maps, no
// build dates, content-hashed names.
import { defineConfig } from "vite";

export default defineConfig({
  // Relative asset URLs, resolved against the <base href> that the server
  // writes into index.html (web.path), so the client works under any path.
  base: "./",
  build: {
    outDir: "../internal/webclient/dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    // No inline script: the strict Content-Security-Policy forbids it.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 8000,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
  },
});
