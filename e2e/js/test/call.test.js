// A 1:1 voice call between two browsers through luxchat's embedded TURN
// server: two headless Chromium pages (Debian's chromium, driven with
// playwright-core, fake microphones) each run matrix-js-sdk's WebRTC call
// API; the caller places the call, the callee answers, and both peer
// connections are forced through TURN (forceTURN: iceTransportPolicy
// "relay"), so media flows only if the server's TURN relays it. Asserts
// what a user would notice: the call connects, audio arrives both ways
// over relayed candidates, and the hangup reaches the other side.
//
// Needs the server started with turn.enabled (run.sh does) and a
// Chromium: LUXCHAT_E2E_CHROMIUM or /usr/bin/chromium.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { BASE_URL, WAIT_MS, rawRequest, registerUser, step } from "../lib/helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.LUXCHAT_E2E_CHROMIUM || "/usr/bin/chromium";

/** Polls fn in the page until check(value) holds; returns the value. */
async function until(page, fn, arg, check, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(fn, arg);
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

describe("a 1:1 call relayed by the embedded TURN server (matrix-js-sdk in Chromium)", { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, () => {
  let browser, site, dir, roomId;
  const pages = {};
  const creds = {};

  before(async () => {
    const turn = await rawRequest("GET", "/_matrix/client/v3/voip/turnServer", {
      accessToken: (creds.alice = await registerUser("alice")).access_token,
    });
    assert.equal(turn.status, 200, `GET /voip/turnServer: ${JSON.stringify(turn.body)}`);
    assert.ok(Array.isArray(turn.body.uris) && turn.body.uris.length > 0, `the server hands out no TURN URIs (is turn.enabled set?): ${JSON.stringify(turn.body)}`);
    creds.bob = await registerUser("bob");

    // The page's script: matrix-js-sdk and page.js in one bundle.
    dir = await mkdtemp(join(tmpdir(), "luxchat-call-"));
    const esbuild = await import("esbuild");
    await esbuild.build({
      entryPoints: [join(here, "..", "call", "page.js")],
      bundle: true,
      format: "esm",
      platform: "browser",
      outfile: join(dir, "page.js"),
      define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
      logLevel: "error",
    });
    const script = await readFile(join(dir, "page.js"));
    site = createServer((req, res) => {
      if (req.url === "/page.js") {
        res.writeHead(200, { "Content-Type": "text/javascript" });
        return res.end(script);
      }
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end('<!doctype html><meta charset="utf-8"><title>call</title><script type="module" src="/page.js"></script>');
    });
    await new Promise((r) => site.listen(0, "127.0.0.1", r));

    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
      ],
    });
    const origin = `http://127.0.0.1:${site.address().port}/`;
    for (const who of ["alice", "bob"]) {
      const context = await browser.newContext({ permissions: ["microphone"] });
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error(`[${who} page error]`, e.message));
      await page.goto(origin);
      await page.waitForFunction(() => window.luxReady === true, null, { timeout: WAIT_MS });
      pages[who] = page;
    }

    const room = await rawRequest("POST", "/_matrix/client/v3/createRoom", {
      accessToken: creds.alice.access_token,
      body: { preset: "private_chat", is_direct: true, invite: [creds.bob.user_id] },
    });
    assert.equal(room.status, 200, JSON.stringify(room.body));
    roomId = room.body.room_id;
    const joined = await rawRequest("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {
      accessToken: creds.bob.access_token,
      body: {},
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
  });

  after(async () => {
    await browser?.close();
    site?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("both clients start with the server's TURN servers", async () => {
    for (const who of ["alice", "bob"]) {
      const c = creds[who];
      const got = await step(`${who}'s client starts in the browser`, () =>
        pages[who].evaluate((a) => window.lux.start(a), { baseUrl: BASE_URL, userId: c.user_id, accessToken: c.access_token, deviceId: c.device_id }),
        WAIT_MS * 2,
      );
      assert.equal(got.voip, true, `${who}: matrix-js-sdk does not support VoIP in this browser`);
      assert.ok(got.turnServers.length > 0 && got.turnServers[0].urls.length > 0, `${who}: no TURN servers: ${JSON.stringify(got)}`);
    }
  });

  it("alice calls, bob answers, and the call connects", async () => {
    await pages.alice.evaluate((r) => window.lux.place(r), roomId);
    await until(pages.bob, () => window.lux.state(), null, (s) => s === "ringing", "bob's incoming call");
    await pages.bob.evaluate(() => window.lux.answer());
    for (const who of ["alice", "bob"]) {
      await until(pages[who], () => window.lux.state(), null, (s) => s === "connected", `${who}'s call to connect`, WAIT_MS * 2);
    }
  });

  it("audio flows both ways over relayed candidates", async () => {
    for (const who of ["alice", "bob"]) {
      const s = await until(pages[who], () => window.lux.stats(), null, (s) => s && s.bytesReceived > 2000 && s.local, `${who} to receive audio`);
      assert.equal(s.local, "relay", `${who}'s media goes over a ${s.local} candidate, not the TURN relay: ${JSON.stringify(s)}`);
    }
  });

  it("alice hangs up and bob's call ends", async () => {
    await pages.alice.evaluate(() => window.lux.hangup());
    await until(pages.bob, () => window.lux.state(), null, (s) => s === "ended", "bob's call to end");
    const seen = await pages.bob.evaluate(() => window.lux.events());
    for (const type of ["m.call.invite", "m.call.answer", "m.call.hangup"]) {
      assert.ok(seen.includes(type), `bob never saw ${type}: ${JSON.stringify(seen)}`);
    }
  });
});
