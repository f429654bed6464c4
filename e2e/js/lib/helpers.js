// Shared helpers for the matrix-js-sdk end-to-end tests.
//
// The tests talk to a running luxchat server whose base URL is given in
// LUXCHAT_E2E_URL (run.sh sets it). They use matrix-js-sdk the way a client
// application would; every wait has an explicit timeout so a broken server
// produces a clear assertion failure instead of a hang.

// matrix-js-sdk 43 uses Promise.withResolvers, which Node 20 lacks.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const sdk = await import("matrix-js-sdk");
export { sdk };
export const {
  createClient,
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  MatrixEventEvent,
  EventType,
  MsgType,
  Preset,
  SyncState,
  Visibility,
  KnownMembership,
  Direction,
  ReceiptType,
} = sdk;

const { logger: sdkLogger } = await import("matrix-js-sdk/lib/logger.js");

export const VERBOSE = !!process.env.LUXCHAT_E2E_VERBOSE;
// matrix-js-sdk logs every HTTP request at debug level, and the Rust crypto
// WASM traces through console.debug; keep the test output readable unless
// LUXCHAT_E2E_VERBOSE is set.
if (!VERBOSE) {
  sdkLogger.setLevel("warn", false);
  console.debug = () => {};
}

/** Errors in SDK log lines: one line, not a stack trace. */
const brief = (a) => (a instanceof Error ? `${a.name}: ${describeError(a)}` : a);

/** Logger handed to every MatrixClient: warnings and errors only, unless verbose. */
const pushRuleWarned = new Set();
const quietLogger = {
  trace() {},
  debug() {},
  info() {},
  warn: (...args) => {
    // Push rules: "Adding …" is the SDK supplying unstable-MSC rules a server may lack
    // (harmless); "Missing …" is a spec default rule absent from /pushrules/: say each once.
    if (typeof args[0] === "string" && /^(Adding|Missing) default global \w+ push rule/.test(args[0])) {
      // The spec (v1.17) dropped these two from the defaults; js-sdk 43 still expects them.
      const removedFromSpec = /\.m\.rule\.(contains_display_name|roomnotif)$/.test(args[0]);
      if (args[0].startsWith("Missing") && !removedFromSpec && !pushRuleWarned.has(args[0])) {
        pushRuleWarned.add(args[0]);
        console.warn(`[js-sdk warn] server's GET /pushrules/: ${args[0]}`);
      }
      return;
    }
    console.warn("[js-sdk warn]", ...args.map(brief));
  },
  error: (...args) => console.error("[js-sdk error]", ...args.map(brief)),
  getChild() {
    return quietLogger;
  },
};
const clientLogger = VERBOSE ? undefined : quietLogger;

/**
 * Every client's HTTP goes through this fetch, which remembers the last few
 * failed requests (non-2xx or network errors) so that a timed-out wait can say
 * which server call went wrong, with the request and the response.
 */
const failedRequests = [];
const redact = (s) => (typeof s === "string" ? s.replace(/"(password|access_token)":"[^"]*"/g, '"$1":"…"') : s);
async function recordingFetch(input, init = {}) {
  const url = String(input instanceof Request ? input.url : input);
  const method = init.method || "GET";
  const where = `${method} ${url.replace(BASE_URL, "").replace(/access_token=[^&]*/, "access_token=…")}`;
  let res;
  try {
    res = await fetch(input, init);
  } catch (e) {
    if (e?.name !== "AbortError") failedRequests.push({ where, error: String(e?.cause || e) });
    throw e;
  }
  // Not worth reporting: the first step of UIA registration is a 401 by design; the SDK
  // also probes optional endpoints (key backup, TURN, unstable MSCs) that may 404.
  const path = url.split("?")[0];
  const expected =
    (res.status === 401 && /\/register$/.test(path)) || /\/unstable\/|\/room_keys\/version|\/voip\/turnServer/.test(path);
  if (!res.ok && !expected) {
    const text = await res
      .clone()
      .text()
      .catch(() => "");
    failedRequests.push({
      where,
      request: typeof init.body === "string" ? redact(init.body).slice(0, 300) : undefined,
      status: res.status,
      response: text.slice(0, 400),
    });
    if (failedRequests.length > 20) failedRequests.shift();
  }
  return res;
}

/** The last `n` failed HTTP requests of all clients, as one string for assertion messages. */
export function recentHttpFailures(n = 4) {
  if (!failedRequests.length) return "";
  return ` | recent failed requests: ${failedRequests
    .slice(-n)
    .map((f) => `${f.where}${f.request ? ` body=${f.request}` : ""} -> ${f.status ?? f.error} ${f.response ?? ""}`)
    .join(" ; ")}`;
}

export const BASE_URL = (process.env.LUXCHAT_E2E_URL || "http://127.0.0.1:8008").replace(/\/+$/, "");
export const SERVER_NAME = process.env.LUXCHAT_E2E_SERVER_NAME || "localhost";
/** A second, federating server (run.sh's fed suite); the first one otherwise. */
export const BASE_URL_B = (process.env.LUXCHAT_E2E_URL_B || BASE_URL).replace(/\/+$/, "");

/** Default timeout for a single "wait until the user sees X" step. */
export const WAIT_MS = Number(process.env.LUXCHAT_E2E_WAIT_MS || 15000);

const RUN_ID = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
let userCounter = 0;

/** A localpart that is unique per test run, e.g. "alice_lx3k9z1" */
export function uniqueLocalpart(name) {
  userCounter += 1;
  return `${name}_${RUN_ID}_${userCounter}`.toLowerCase();
}

/** Race a promise against a timeout, failing with a descriptive message. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}${recentHttpFailures()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Wait until check() returns a truthy value. check() is evaluated immediately
 * and again whenever one of `events` is emitted by `emitter` (and, as a safety
 * net, every 250 ms). Resolves to check()'s value. On timeout, rejects with an
 * Error naming `what` and, if given, describe() (the state the user saw instead).
 */
export function waitFor(emitter, events, check, { timeout = WAIT_MS, what = "condition", describe } = {}) {
  return new Promise((resolve, reject) => {
    let done = false;
    const evs = Array.isArray(events) ? events : [events];
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      for (const ev of evs) emitter.removeListener(ev, onEvent);
      if (err) reject(err);
      else resolve(value);
    };
    const onEvent = () => {
      try {
        const v = check();
        if (v) finish(null, v);
      } catch (e) {
        finish(e);
      }
    };
    for (const ev of evs) emitter.on(ev, onEvent);
    const poll = setInterval(onEvent, 250);
    const timer = setTimeout(() => {
      let extra = "";
      if (describe) {
        try {
          extra = `; instead saw: ${describe()}`;
        } catch (e) {
          extra = `; (describe failed: ${e})`;
        }
      }
      finish(new Error(`Timed out after ${timeout} ms waiting for ${what}${extra}${recentHttpFailures()}`));
    }, timeout);
    onEvent();
  });
}

/** Format a thrown matrix-js-sdk error (MatrixError / ConnectionError) for assertion messages. */
export function describeError(e) {
  if (!e) return String(e);
  if (e.name === "AbortError" || e.name === "TimeoutError") {
    return `no answer from the server within the request timeout (${WAIT_MS} ms)`;
  }
  const parts = [];
  if (e.httpStatus) parts.push(`HTTP ${e.httpStatus}`);
  if (e.errcode) parts.push(e.errcode);
  if (e.data && Object.keys(e.data).length) parts.push(JSON.stringify(e.data));
  else if (e.message) parts.push(e.message);
  return parts.join(" ") || String(e);
}

/** Call fn; on failure rethrow with a message that says which user action failed and how. */
export async function step(what, fn, timeout = WAIT_MS) {
  try {
    return await withTimeout(Promise.resolve().then(fn), timeout, what);
  } catch (e) {
    const err = new Error(`${what} failed: ${describeError(e)}`);
    err.cause = e;
    throw err;
  }
}

/**
 * Register a user with the user-interactive m.login.dummy flow, exactly as a
 * client does: first request without auth returns 401 with the flows and a
 * session, the second completes the m.login.dummy stage.
 */
export async function registerUser(name, { password = "correct horse battery staple", deviceName, baseUrl = BASE_URL } = {}) {
  const localpart = uniqueLocalpart(name);
  const tmp = createClient({ baseUrl, logger: clientLogger, fetchFn: recordingFetch, localTimeoutMs: WAIT_MS });
  const body = { username: localpart, password };
  if (deviceName) body.initial_device_display_name = deviceName;
  let session;
  try {
    const res = await tmp.registerRequest(body);
    // A server may complete registration without UIA; accept that.
    return { localpart, password, baseUrl, ...res };
  } catch (e) {
    if (e.httpStatus !== 401 || !e.data || !Array.isArray(e.data.flows)) {
      throw new Error(
        `POST /register (no auth) for ${localpart}: expected 401 with UIA flows, got ${describeError(e)}`,
      );
    }
    const hasDummy = e.data.flows.some((f) => Array.isArray(f.stages) && f.stages.length === 1 && f.stages[0] === "m.login.dummy");
    if (!hasDummy) {
      throw new Error(`POST /register: no single-stage m.login.dummy flow offered: ${JSON.stringify(e.data)}`);
    }
    session = e.data.session;
  }
  const res = await step(`POST /register with m.login.dummy for ${localpart}`, () =>
    tmp.registerRequest({ ...body, auth: { type: "m.login.dummy", session } }),
  );
  if (!res.access_token || !res.user_id || !res.device_id) {
    throw new Error(`POST /register returned no access_token/user_id/device_id: ${JSON.stringify(res)}`);
  }
  return { localpart, password, baseUrl, ...res };
}

const startedClients = new Set();

/** Create a client for registered/logged-in credentials (not started). */
export function clientFor(creds, opts = {}) {
  const client = createClient({
    baseUrl: creds.baseUrl || BASE_URL,
    userId: creds.user_id,
    accessToken: creds.access_token,
    deviceId: creds.device_id,
    timelineSupport: true,
    logger: clientLogger,
    fetchFn: recordingFetch,
    // Bound every request (the /sync long-poll gets its own, longer limit from the SDK).
    localTimeoutMs: WAIT_MS,
    ...opts,
  });
  return client;
}

/** Start the client's sync loop and wait (bounded) for the first sync to complete. */
export async function startAndSync(client, { initialSyncLimit = 20, timeout = WAIT_MS * 2 } = {}) {
  let lastState = "none";
  let lastError;
  const prepared = new Promise((resolve, reject) => {
    const onSync = (state, _prev, data) => {
      lastState = state;
      if (data && data.error) lastError = data.error;
      if (state === SyncState.Prepared || state === SyncState.Syncing) {
        client.removeListener(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        client.removeListener(ClientEvent.Sync, onSync);
        reject(new Error(`client start-up (initial /sync) for ${client.getUserId()} failed: ${describeError(lastError)}${recentHttpFailures(2)}`));
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  startedClients.add(client);
  await client.startClient({ initialSyncLimit, lazyLoadMembers: false });
  await withTimeout(
    prepared,
    timeout,
    `first /sync of ${client.getUserId()} (last sync state ${lastState}${lastError ? `, error ${describeError(lastError)}` : ""})${recentHttpFailures()}`,
  );
}

/** Stop every client started through startAndSync. */
export function stopAllClients() {
  for (const c of startedClients) {
    try {
      c.stopClient();
    } catch {
      // ignore
    }
  }
  startedClients.clear();
}

/** Membership of userId in roomId as seen by client (or undefined). */
export function membershipSeenBy(client, roomId, userId) {
  const room = client.getRoom(roomId);
  if (!room) return undefined;
  const m = room.getMember(userId);
  return m ? m.membership : undefined;
}

/** Bodies of m.room.message events in the room's live timeline, as seen by client. */
export function timelineBodies(client, roomId) {
  const room = client.getRoom(roomId);
  if (!room) return [];
  return room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => e.getType() === "m.room.message")
    .map((e) => e.getContent().body);
}

/** Wait until `client` sees a message with `body` from `sender` in the room timeline; resolves to the event. */
export function waitForMessage(client, roomId, sender, body, opts = {}) {
  const find = () => {
    const room = client.getRoom(roomId);
    if (!room) return undefined;
    return room
      .getLiveTimeline()
      .getEvents()
      .find(
        (e) =>
          e.getSender() === sender &&
          e.getType() === "m.room.message" &&
          e.getContent().body === body &&
          !e.status, // not a local echo still being sent
      );
  };
  return waitFor(client, [RoomEvent.Timeline, ClientEvent.Sync], find, {
    what: `${client.getUserId()} to see message ${JSON.stringify(body)} from ${sender} in ${roomId}`,
    describe: () => JSON.stringify(timelineBodies(client, roomId).slice(-10)),
    ...opts,
  });
}

/** POST/GET a raw client-server endpoint; returns {status, body}. Used only for probing features. */
export async function rawRequest(method, path, { accessToken, body, baseUrl = BASE_URL } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}
