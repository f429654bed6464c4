// The embedded web client (internal/webclient, built from web/) in two
// headless Chromium browsers (Debian's chromium, driven with
// playwright-core) against the server under test, which serves it at /:
// Alice (a desktop window) registers in the UI and Bob (a phone-sized
// one) logs in with his password; Alice finds Bob in the user directory and starts a
// direct chat, which is end-to-end encrypted; Bob accepts the invitation;
// each message typed in one browser shows decrypted in the other, and
// Markdown arrives formatted. The server only ever holds ciphertext, and a
// matrix-js-sdk client in node (Bob's second device, Rust crypto) decrypts
// what the web client sent. Throughout: no request leaves the origin, no
// Content-Security-Policy violation, no uncaught page error.
//
// Screenshots of each step go to LUXCHAT_E2E_SCREENSHOTS (default: a
// temporary directory, printed).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  BASE_URL,
  WAIT_MS,
  clientFor,
  rawRequest,
  registerUser,
  startAndSync,
  stopAllClients,
  uniqueLocalpart,
  waitForMessage,
  withTimeout,
} from "../lib/helpers.js";

const CHROMIUM = process.env.LUXCHAT_E2E_CHROMIUM || "/usr/bin/chromium";
const UI_WAIT = WAIT_MS * 2; // the first start loads and compiles the crypto WebAssembly

describe("the embedded web client: an encrypted direct chat between two browsers", { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, () => {
  let browser, shots, roomId, bobNode;
  const creds = {};
  const pages = {};
  const problems = []; // foreign requests, CSP violations, page errors
  let shot = 0;

  async function snap(who, what) {
    const file = join(shots, `${String(++shot).padStart(2, "0")}-${who}-${what}.png`);
    await pages[who].screenshot({ path: file });
  }

  before(async () => {
    shots = process.env.LUXCHAT_E2E_SCREENSHOTS || (await mkdtemp(join(tmpdir(), "luxchat-webclient-")));
    await mkdir(shots, { recursive: true });
    console.log(`# screenshots in ${shots}`);
    creds.alice = { localpart: uniqueLocalpart("alice"), password: "correct horse battery staple" }; // registers in the UI
    creds.bob = await registerUser("bob");
    // Bob lets himself be found in the user directory.
    const vis = await rawRequest("PUT", `/_matrix/client/v3/user/${encodeURIComponent(creds.bob.user_id)}/account_data/lu.luxchat.directory`, {
      accessToken: creds.bob.access_token,
      body: { visible: true },
    });
    assert.equal(vis.status, 200, JSON.stringify(vis.body));

    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"] });
    const origin = new URL(BASE_URL).origin;
    const viewports = { alice: { width: 1200, height: 800 }, bob: { width: 390, height: 760 } };
    for (const who of ["alice", "bob"]) {
      const context = await browser.newContext({ viewport: viewports[who], locale: "en-GB" });
      await context.addInitScript(() => {
        window.__csp = [];
        document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
      });
      const page = await context.newPage();
      page.on("pageerror", (e) => problems.push(`${who}: page error: ${e.message}`));
      page.on("request", (r) => {
        const u = new URL(r.url());
        if (!["data:", "blob:"].includes(u.protocol) && u.origin !== origin) problems.push(`${who}: request to another origin: ${r.url()}`);
      });
      pages[who] = page;
    }
  });

  after(async () => {
    stopAllClients();
    await browser?.close();
  });

  it("Alice creates her account in the client, Bob logs in with his password", async () => {
    for (const who of ["alice", "bob"]) {
      const page = pages[who];
      await page.goto(BASE_URL + "/");
      await page.getByRole("heading", { name: /Sign in to/ }).waitFor({ timeout: UI_WAIT });
      if (who === "alice") {
        await page.getByRole("button", { name: "Create an account" }).click();
        await page.getByRole("heading", { name: "Create an account" }).waitFor();
      }
      await page.getByLabel("Username").fill(creds[who].localpart);
      await page.getByLabel("Password").fill(creds[who].password);
      await snap(who, "login");
      await page.getByRole("button", { name: who === "alice" ? "Create account" : "Sign in", exact: true }).click();
      await page.getByRole("heading", { name: "Conversations" }).waitFor({ timeout: UI_WAIT });
      await snap(who, "logged-in");
    }
    // Alice's session in the browser: her token serves the checks below.
    const session = await pages.alice.evaluate(() => JSON.parse(localStorage.getItem("luxchat.session")));
    assert.match(session.userId, new RegExp(`^@${creds.alice.localpart}:`));
    Object.assign(creds.alice, { user_id: session.userId, access_token: session.accessToken });
  });

  it("Alice finds Bob in the directory and starts an encrypted direct chat", async () => {
    const page = pages.alice;
    await page.getByRole("button", { name: "New message" }).click();
    await page.getByLabel("Search people").fill(creds.bob.localpart);
    const result = page.getByRole("button", { name: new RegExp(`Message .*${creds.bob.localpart}`) });
    await result.waitFor({ timeout: UI_WAIT });
    await snap("alice", "directory-search");
    await result.click();
    await page.getByText("Messages here are end-to-end encrypted.").waitFor({ timeout: UI_WAIT });
    roomId = decodeURIComponent(new URL(page.url()).pathname.replace(/^\/room\//, ""));
    assert.match(roomId, /^!/, `the URL names the room: ${page.url()}`);
    await snap("alice", "dm-created");
    const state = await rawRequest("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`, { accessToken: creds.alice.access_token });
    assert.equal(state.status, 200, "the direct chat has m.room.encryption");
    assert.equal(state.body.algorithm, "m.megolm.v1.aes-sha2");
  });

  it("Bob's second device (matrix-js-sdk in node) is online, and Bob accepts the invitation on his phone", async () => {
    // A device of Bob's that the web client must encrypt for too.
    const login = await rawRequest("POST", "/_matrix/client/v3/login", {
      body: { type: "m.login.password", identifier: { type: "m.id.user", user: creds.bob.localpart }, password: creds.bob.password, initial_device_display_name: "node" },
    });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    bobNode = clientFor({ ...login.body, baseUrl: BASE_URL });
    await withTimeout(bobNode.initRustCrypto({ useIndexedDB: false }), WAIT_MS, "bob (node): initRustCrypto");
    await startAndSync(bobNode);

    const page = pages.bob;
    const accept = page.getByRole("button", { name: /^Accept/ });
    await accept.waitFor({ timeout: UI_WAIT });
    await snap("bob", "invitation");
    await accept.click();
    // On a phone the room replaces the list.
    await page.getByText("Messages here are end-to-end encrypted.").waitFor({ timeout: UI_WAIT });
    await snap("bob", "joined");
    await bobNode.joinRoom(roomId).catch(() => {}); // already joined by the browser: the same account
  });

  it("Alice's message reaches Bob decrypted, and the server holds only ciphertext", async () => {
    const text = `Moien Bob, this is secret ${Date.now()}`;
    const composer = pages.alice.getByRole("textbox", { name: /^Message / });
    // Bob's join reaches Alice's client.
    await pages.alice.locator(".notice", { hasText: `${creds.bob.localpart} joined` }).waitFor({ timeout: UI_WAIT });
    await composer.fill(text);
    await composer.press("Enter");
    await pages.alice.locator(".msg.mine", { hasText: text }).waitFor({ timeout: UI_WAIT });
    await pages.bob.locator(".msg", { hasText: text }).waitFor({ timeout: UI_WAIT });
    await snap("alice", "sent");
    await snap("bob", "received");

    const msgs = await rawRequest("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, { accessToken: creds.bob.access_token });
    assert.equal(msgs.status, 200);
    const fromAlice = msgs.body.chunk.filter((e) => e.sender === creds.alice.user_id && e.type !== "m.room.member" && !e.state_key && e.state_key !== "");
    assert.ok(fromAlice.length > 0 && fromAlice.every((e) => e.type === "m.room.encrypted"), `the server has Alice's message as ${JSON.stringify(fromAlice.map((e) => e.type))}`);
    assert.ok(!JSON.stringify(msgs.body).includes(text), "the plaintext is on the server");

    // matrix-js-sdk decrypts what the web client sent.
    const ev = await waitForMessage(bobNode, roomId, creds.alice.user_id, text, { timeout: UI_WAIT });
    assert.ok(ev.isEncrypted() && !ev.isDecryptionFailure(), "node client: decrypted from m.room.encrypted");
  });

  it("Bob answers in Markdown and Alice sees it formatted", async () => {
    const composer = pages.bob.getByRole("textbox", { name: /^Message / });
    await composer.fill("**Merci**, got it");
    await composer.press("Enter");
    const strong = pages.alice.locator(".msg:not(.mine) strong", { hasText: "Merci" });
    await strong.waitFor({ timeout: UI_WAIT });
    await snap("bob", "answered");
    await snap("alice", "answer-received");
    const ev = await waitForMessage(bobNode, roomId, creds.bob.user_id, "**Merci**, got it", { timeout: UI_WAIT });
    assert.equal(ev.getContent().formatted_body, "<p><strong>Merci</strong>, got it</p>");
  });

  it("Alice creates a private room, encrypted by default; a new message in the chat shows as unread until she opens it", async () => {
    const page = pages.alice;
    await page.getByRole("button", { name: "New room" }).click();
    await page.getByLabel("Room name").fill("Team Kirchberg");
    assert.equal(await page.getByLabel("End-to-end encrypted").isChecked(), true, "encryption is on by default");
    await snap("alice", "create-room");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "Team Kirchberg" }).waitFor({ timeout: UI_WAIT });
    await page.getByText("Messages here are end-to-end encrypted.").waitFor({ timeout: UI_WAIT });

    const composer = pages.bob.getByRole("textbox", { name: /^Message / });
    await composer.fill("are you there?");
    await composer.press("Enter");
    const dm = page.locator(`.room-item[data-room-id="${roomId}"]`);
    await dm.locator(".badge", { hasText: "1" }).waitFor({ timeout: UI_WAIT });
    assert.equal(await dm.locator(".badge").getAttribute("aria-label"), "1 unread");
    // The most recent activity first.
    assert.equal(await page.locator(".room-item").first().getAttribute("data-room-id"), roomId);
    await snap("alice", "unread");
    await dm.click();
    await page.locator(".msg", { hasText: "are you there?" }).waitFor({ timeout: UI_WAIT });
    await dm.locator(".badge").waitFor({ state: "detached", timeout: UI_WAIT });
  });

  it("Alice joins a room with a long history and scrolls back through it", async () => {
    // Bob's room, written before Alice joins: her client gets the latest
    // messages with the join and must page back for the rest.
    const made = await rawRequest("POST", "/_matrix/client/v3/createRoom", {
      accessToken: creds.bob.access_token,
      body: { name: "History", preset: "private_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "shared" } }] },
    });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const history = made.body.room_id;
    for (let i = 1; i <= 70; i++) {
      const r = await rawRequest("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(history)}/send/m.room.message/h${i}`, {
        accessToken: creds.bob.access_token,
        body: { msgtype: "m.text", body: `history ${i}` },
      });
      assert.equal(r.status, 200);
    }
    const inv = await rawRequest("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(history)}/invite`, { accessToken: creds.bob.access_token, body: { user_id: creds.alice.user_id } });
    assert.equal(inv.status, 200, JSON.stringify(inv.body));
    const page = pages.alice;
    await page.getByRole("button", { name: "Accept: History" }).click({ timeout: UI_WAIT });
    await page.getByRole("heading", { name: "History" }).waitFor({ timeout: UI_WAIT });
    await page.locator(".msg", { hasText: "history 70" }).waitFor({ timeout: UI_WAIT }).catch(async (e) => {
      await snap("alice", "history-FAILED");
      throw e;
    });
    assert.equal(await page.locator(".msg .body", { hasText: /^history 1$/ }).count(), 0, "the first message came with the join: nothing to scroll back for");
    const first = page.locator(".msg .body", { hasText: /^history 1$/ });
    const start = page.getByText("This is the start of the conversation.");
    const deadline = Date.now() + UI_WAIT;
    while ((await start.count()) === 0) {
      assert.ok(Date.now() < deadline, "scrolling up never reached the start of the room");
      await page.locator(".timeline").evaluate((el) => {
        el.scrollTop = 0;
        el.dispatchEvent(new Event("scroll"));
      });
      await page.waitForTimeout(300);
    }
    assert.equal(await first.count(), 1, "the first message is shown once");
    assert.equal(await page.locator(".msg .body", { hasText: /^history \d+$/ }).count(), 70, "every message is shown once");
    await snap("alice", "history");
  });

  it("the room list shows the conversation; the language and theme switch", async () => {
    const page = pages.alice;
    await page.locator(`.room-item[data-room-id="${roomId}"]`).waitFor({ timeout: UI_WAIT });
    await page.getByText("Settings").click();
    await page.getByLabel("Language").selectOption("fr");
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    await page.getByRole("button", { name: "Nouveau message" }).waitFor();
    await page.getByRole("button", { name: /^Thème/ }).click();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "fr");
    await snap("alice", "french-dark");
    // Installable: the manifest is linked and the shell's service worker runs.
    const sw = await page.evaluate(() => navigator.serviceWorker.ready.then((r) => r.active?.scriptURL));
    assert.equal(sw, BASE_URL + "/sw.js");
    assert.equal(await page.locator('link[rel="manifest"]').getAttribute("href"), "./manifest.webmanifest");
  });

  it("Alice reloads: the same session, and her crypto store (IndexedDB) still decrypts the chat", async () => {
    const page = pages.alice;
    const before = await page.evaluate(() => localStorage.getItem("luxchat.session"));
    await page.goto(`${BASE_URL}/room/${encodeURIComponent(roomId)}`);
    await page.locator(".msg:not(.mine) strong", { hasText: "Merci" }).waitFor({ timeout: UI_WAIT });
    await page.locator(".msg", { hasText: "are you there?" }).waitFor({ timeout: UI_WAIT });
    assert.equal(await page.locator(".msg .body.failed").count(), 0, "a message could not be decrypted after the reload");
    assert.equal(await page.evaluate(() => localStorage.getItem("luxchat.session")), before, "the reload made a new session");
    await snap("alice", "reloaded");
  });

  it("Bob logs out and is back at the login page", async () => {
    const page = pages.bob;
    await page.getByRole("button", { name: "Back to conversations" }).click();
    await page.getByText("Settings").click();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: /Sign in to/ }).waitFor({ timeout: UI_WAIT });
    assert.equal(await page.evaluate(() => localStorage.getItem("luxchat.session")), null);
    await snap("bob", "logged-out");
  });

  it("nothing left the origin, broke the CSP or threw", async () => {
    for (const who of ["alice", "bob"]) {
      const csp = await pages[who].evaluate(() => window.__csp);
      for (const v of csp) problems.push(`${who}: CSP violation: ${v}`);
    }
    assert.deepEqual(problems, []);
  });
});
