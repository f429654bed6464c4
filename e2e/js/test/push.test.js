// Push notifications with matrix-js-sdk: Bob registers an HTTP pusher that
// points at a small push gateway this test runs; Alice mentions Bob in an
// end-to-end encrypted room; the gateway receives the notification (the
// server only sees ciphertext, so .m.rule.encrypted_room_one_to_one
// decides), and Bob's client decrypts the mention.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";

import {
  ClientEvent,
  MatrixEventEvent,
  RoomEvent,
  RoomMemberEvent,
  WAIT_MS,
  clientFor,
  membershipSeenBy,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  withTimeout,
} from "../lib/helpers.js";

const MEGOLM = "m.megolm.v1.aes-sha2";
const APP_ID = "org.example.luxchat.e2e";

/** A push gateway on loopback that records what it receives. */
function startGateway() {
  const received = [];
  const waiters = new Set();
  const server = http.createServer((req, res) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/_matrix/push/v1/notify") {
        res.writeHead(404).end();
        return;
      }
      let body;
      try {
        body = JSON.parse(data);
      } catch {
        res.writeHead(400).end();
        return;
      }
      received.push(body.notification);
      for (const w of waiters) w();
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ rejected: [] }));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}/_matrix/push/v1/notify`,
        received,
        close: () => new Promise((r) => server.close(r)),
        /** The first notification for an event, waited for (bounded). */
        waitFor(eventId, timeout = WAIT_MS * 2) {
          const find = () => received.find((n) => n.event_id === eventId);
          return withTimeout(
            new Promise((resolve) => {
              const check = () => {
                const n = find();
                if (n) {
                  waiters.delete(check);
                  resolve(n);
                }
              };
              waiters.add(check);
              check();
            }),
            timeout,
            `the push gateway to receive a notification for ${eventId} (got ${JSON.stringify(received.map((n) => n.event_id))})`,
          );
        },
      });
    });
  });
}

/** Poll an async condition until it holds (bounded). */
async function until(cond, what, timeout = WAIT_MS * 2) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    assert.ok(Date.now() < deadline, `timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("push notifications (matrix-js-sdk, HTTP pusher, encrypted room)", () => {
  const creds = {};
  const c = {};
  let gateway;
  let roomId;

  before(async () => {
    gateway = await startGateway();
    creds.alice = await registerUser("palice", { deviceName: "Alice push" });
    creds.bob = await registerUser("pbob", { deviceName: "Bob phone" });
  });

  after(async () => {
    stopAllClients();
    await gateway?.close();
  });

  it("Bob sets an HTTP pusher and lists it", async () => {
    for (const who of ["alice", "bob"]) {
      c[who] = clientFor(creds[who]);
      await withTimeout(c[who].initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto`);
      await startAndSync(c[who]);
    }
    await step("Bob: POST /pushers/set", () =>
      c.bob.setPusher({
        kind: "http",
        app_id: APP_ID,
        pushkey: "bob-push-key",
        app_display_name: "luxchat e2e",
        device_display_name: "Bob's phone",
        lang: "en",
        data: { url: gateway.url },
      }),
    );
    const { pushers } = await step("Bob: GET /pushers", () => c.bob.getPushers());
    assert.equal(pushers.length, 1);
    assert.equal(pushers[0].pushkey, "bob-push-key");
    assert.equal(pushers[0].data.url, gateway.url);
    // The client has the server's push rules, with the spec's defaults.
    const rules = c.bob.pushRules?.global;
    assert.ok(rules?.override?.some((r) => r.rule_id === ".m.rule.is_user_mention"), "the client knows .m.rule.is_user_mention");
  });

  it("Alice mentions Bob in an encrypted room and the gateway is notified", async () => {
    const { alice, bob } = c;
    assert.ok(alice && bob, "prerequisite: clients started");
    const res = await step("Alice: createRoom with m.room.encryption", () =>
      alice.createRoom({
        name: "Pager duty",
        invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
      }),
    );
    roomId = res.room_id;
    // The invite itself notifies Bob (.m.rule.invite_for_me).
    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Bob to see the invite",
    });
    await step("Bob: join", () => bob.joinRoom(roomId));
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "join", {
      what: "Alice to see Bob joined",
    });
    await until(() => alice.getCrypto().isEncryptionEnabledInRoom(roomId), "Alice's crypto to treat the room as encrypted", WAIT_MS);

    const body = `${bob.getUserId()}: the build is red (${Date.now()})`;
    const sent = await step("Alice: send an encrypted mention of Bob", () =>
      alice.sendMessage(roomId, { msgtype: "m.text", body, "m.mentions": { user_ids: [bob.getUserId()] } }),
    );
    const n = await gateway.waitFor(sent.event_id);
    assert.equal(n.room_id, roomId);
    assert.equal(n.type, "m.room.encrypted", "the server pushes the event as it has it: encrypted");
    assert.equal(n.sender, alice.getUserId());
    assert.equal(n.room_name, "Pager duty");
    assert.equal(n.content.algorithm, MEGOLM);
    assert.equal(n.content.body, undefined, "no plaintext reaches the gateway");
    assert.ok(n.counts.unread >= 1, `unread count ${JSON.stringify(n.counts)}`);
    assert.equal(n.devices.length, 1);
    assert.equal(n.devices[0].app_id, APP_ID);
    assert.equal(n.devices[0].pushkey, "bob-push-key");
    assert.equal(n.devices[0].data.url, undefined, "the gateway URL is not forwarded");
    assert.equal(n.devices[0].tweaks.sound, "default", ".m.rule.encrypted_room_one_to_one sets the default sound");

    // Bob's client decrypts the event and finds the mention the server could not see.
    const ev = await waitFor(
      bob,
      [RoomEvent.Timeline, MatrixEventEvent.Decrypted, ClientEvent.Sync],
      () => {
        const e = bob.getRoom(roomId)?.findEventById(sent.event_id);
        return e && !e.isDecryptionFailure() && e.getType() === "m.room.message" ? e : undefined;
      },
      { what: "Bob to decrypt the mention", timeout: WAIT_MS * 2 },
    );
    assert.equal(ev.getContent().body, body);
    assert.deepEqual(ev.getContent()["m.mentions"].user_ids, [bob.getUserId()]);
    // The server counted the notification for Bob.
    await until(() => (bob.getRoom(roomId)?.getUnreadNotificationCount() ?? 0) >= 1, "Bob's unread notification count");
  });
});
