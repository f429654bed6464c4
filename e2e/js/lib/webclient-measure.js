// Measures the embedded web client served by a running luxchat
// (LUXCHAT_E2E_URL, default http://127.0.0.1:8008), for docs/benchmarks.md:
//   - the JavaScript of the first load: the scripts and module preloads
//     index.html names, gzipped (-9) and as served (Content-Length with
//     Accept-Encoding: gzip); the lazily loaded crypto (its chunks and
//     WebAssembly) apart;
//   - time to interactive in headless Chromium (Debian's chromium, with
//     playwright-core): navigation start to the first usable screen
//     (performance mark "luxchat-interactive"), for the login page in a
//     fresh browser, and for the room list of a logged-in user (crypto
//     from IndexedDB, then the first sync), with the main thread's busy
//     time (CDP TaskDuration, CPU on that thread) beside the wall time.
// Usage: node lib/webclient-measure.js [runs=7]
import { existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { BASE_URL, registerUser } from "./helpers.js";

const CHROMIUM = process.env.LUXCHAT_E2E_CHROMIUM || "/usr/bin/chromium";
const RUNS = Number(process.argv[2] || 7);

async function get(path, gzip) {
  const res = await fetch(new URL(path, BASE_URL + "/"), { headers: gzip ? { "Accept-Encoding": "gzip" } : {} });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return res;
}

const kb = (n) => (n / 1024).toFixed(1) + " KiB";
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const html = await (await get("/")).text();
const first = [...html.matchAll(/<script[^>]+src="([^"]+)"|<link[^>]+rel="modulepreload"[^>]+href="([^"]+)"/g)].map((m) => m[1] || m[2]);
let raw = 0;
let gz = 0;
for (const p of first) {
  const body = Buffer.from(await (await get(p)).arrayBuffer());
  raw += body.length;
  gz += gzipSync(body, { level: 9 }).length;
}
console.log(`first-load JavaScript: ${first.length} files, ${kb(raw)} raw, ${kb(gz)} gzipped`);

// The lazy part: the assets the first-load scripts import later (the
// crypto chunk), and what those import (its WebAssembly).
const seen = new Set(first.map((f) => f.split("/").pop()));
const queue = [...seen];
while (queue.length) {
  const name = queue.shift();
  const body = Buffer.from(await (await get("assets/" + name)).arrayBuffer());
  if (!first.some((f) => f.endsWith(name))) console.log(`lazy ${name}: ${kb(body.length)} raw, ${kb(gzipSync(body, { level: 9 }).length)} gzipped`);
  if (!name.endsWith(".js")) continue;
  for (const m of body.toString().matchAll(/["'`/]([\w.-]+-[\w-]{8}\.(?:js|wasm))["'`]/g)) {
    if (!seen.has(m[1])) {
      seen.add(m[1]);
      queue.push(m[1]);
    }
  }
}

if (!existsSync(CHROMIUM)) {
  console.log(`no Chromium at ${CHROMIUM}: no time to interactive`);
  process.exit(0);
}
const { chromium } = await import("playwright-core");
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"] });

async function measure(context) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  await page.goto(BASE_URL + "/");
  await page.waitForSelector("body[data-ready]", { timeout: 60000 });
  const tti = await page.evaluate(() => performance.getEntriesByName("luxchat-interactive")[0].startTime);
  const m = Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((x) => [x.name, x.value]));
  await page.close();
  return { tti, busy: m.TaskDuration * 1000 };
}

const cold = [];
for (let i = 0; i < RUNS; i++) {
  const ctx = await browser.newContext();
  cold.push(await measure(ctx));
  await ctx.close();
}
console.log(`login page, fresh browser: time to interactive median ${median(cold.map((x) => x.tti)).toFixed(0)} ms (runs: ${cold.map((x) => x.tti.toFixed(0)).join(", ")}), main thread busy median ${median(cold.map((x) => x.busy)).toFixed(0)} ms`);

// A logged-in user: log in once in the UI, then reload (HTTP cache warm, crypto store in IndexedDB).
const user = await registerUser("measure");
const ctx = await browser.newContext();
const page = await ctx.newPage();
await page.goto(BASE_URL + "/");
await page.getByLabel("Username").fill(user.localpart);
await page.getByLabel("Password").fill(user.password);
await page.getByRole("button", { name: "Sign in", exact: true }).click();
await page.getByRole("heading", { name: "Conversations" }).waitFor({ timeout: 60000 });
await page.close();
const warm = [];
for (let i = 0; i < RUNS; i++) warm.push(await measure(ctx));
console.log(`room list, logged in (reload): time to interactive median ${median(warm.map((x) => x.tti)).toFixed(0)} ms (runs: ${warm.map((x) => x.tti.toFixed(0)).join(", ")}), main thread busy median ${median(warm.map((x) => x.busy)).toFixed(0)} ms`);
await browser.close();
