// End-to-end encryption with matrix-js-sdk's Rust crypto (matrix-sdk-crypto-wasm):
// Alice and Bob share a room created with m.room.encryption in initial_state,
// exchange messages, and each decrypts the other's.
//
// Skipped (with a message) while the server does not implement the keys API:
// detected by POST /_matrix/client/v3/keys/query answering 404 M_UNRECOGNIZED.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  ClientEvent,
  MatrixEventEvent,
  RoomEvent,
  RoomMemberEvent,
  WAIT_MS,
  clientFor,
  membershipSeenBy,
  rawRequest,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  withTimeout,
} from "../lib/helpers.js";

const MEGOLM = "m.megolm.v1.aes-sha2";

describe("end-to-end encrypted chat (matrix-js-sdk + Rust crypto)", () => {
  const creds = {};
  const c = {};
  let skipReason;
  let roomId;
  let ready = false;

  const need = (cond, what) => assert.ok(cond, `prerequisite missing: ${what} (an earlier step failed)`);

  before(async () => {
    creds.alice = await registerUser("ealice", { deviceName: "Alice E2EE" });
    const probe = await rawRequest("POST", "/_matrix/client/v3/keys/query", {
      accessToken: creds.alice.access_token,
      body: { device_keys: { [creds.alice.user_id]: [] } },
    });
    if (probe.status === 404 && probe.body && probe.body.errcode === "M_UNRECOGNIZED") {
      skipReason = `server does not implement the E2EE keys API yet: POST /_matrix/client/v3/keys/query -> 404 M_UNRECOGNIZED`;
      console.log(`SKIP e2ee: ${skipReason}`);
      return;
    }
    creds.bob = await registerUser("ebob", { deviceName: "Bob E2EE" });
  });

  after(() => stopAllClients());

  /** Decrypted plaintext of an event as seen by a client, or undefined while still encrypted. */
  const plaintext = (ev) => (ev.getType() === "m.room.message" && !ev.isDecryptionFailure() ? ev.getContent().body : undefined);

  /** Wait until `client` has decrypted a message from `sender` with `body` in the room. */
  async function waitForDecrypted(client, sender, body) {
    const find = () => {
      const room = client.getRoom(roomId);
      if (!room) return undefined;
      return room
        .getLiveTimeline()
        .getEvents()
        .find((e) => e.getSender() === sender && e.isEncrypted() && plaintext(e) === body);
    };
    const describeTimeline = () => {
      const room = client.getRoom(roomId);
      if (!room) return "no room";
      return JSON.stringify(
        room
          .getLiveTimeline()
          .getEvents()
          .filter((e) => e.getSender() === sender)
          .slice(-5)
          .map((e) => ({
            wire: e.getWireType(),
            type: e.getType(),
            body: e.getContent().body,
            decryptionFailure: e.isDecryptionFailure() ? e.decryptionFailureReason : undefined,
          })),
      );
    };
    return waitFor(client, [RoomEvent.Timeline, MatrixEventEvent.Decrypted, ClientEvent.Sync], find, {
      timeout: WAIT_MS * 2,
      what: `${client.getUserId()} to decrypt ${JSON.stringify(body)} from ${sender}`,
      describe: describeTimeline,
    });
  }

  /** Wait until `client`'s crypto knows `userId`'s device `deviceId` (i.e. /keys/query returned it). */
  async function waitForDevice(client, userId, deviceId) {
    const deadline = Date.now() + WAIT_MS * 2;
    let last;
    while (Date.now() < deadline) {
      const map = await client.getCrypto().getUserDeviceInfo([userId], true);
      last = map.get(userId);
      if (last && last.has(deviceId)) return last.get(deviceId);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.fail(
      `${client.getUserId()} never learned ${userId}'s device ${deviceId} via /keys/query; knows ${JSON.stringify(last ? [...last.keys()] : [])}`,
    );
  }

  it("Alice and Bob start clients with Rust crypto and upload device keys", async (t) => {
    if (skipReason) return t.skip(skipReason);
    for (const who of ["alice", "bob"]) {
      c[who] = clientFor(creds[who]);
      await withTimeout(c[who].initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto`);
      await startAndSync(c[who]);
    }
    // Each device's keys must become visible to the other user via /keys/query.
    const bobsDevice = await waitForDevice(c.alice, creds.bob.user_id, creds.bob.device_id);
    assert.ok(bobsDevice.getIdentityKey(), "Bob's device has a curve25519 identity key");
    await waitForDevice(c.bob, creds.alice.user_id, creds.alice.device_id);
  });

  it("Alice creates an encrypted room, Bob joins", async (t) => {
    if (skipReason) return t.skip(skipReason);
    need(c.alice && c.bob, "crypto-enabled clients");
    const { alice, bob } = c;
    const res = await step("Alice: createRoom with m.room.encryption", () =>
      alice.createRoom({
        name: "Secret garden",
        invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
      }),
    );
    roomId = res.room_id;
    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Bob to see the invite to the encrypted room",
    });
    await step("Bob: join", () => bob.joinRoom(roomId));
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "join", {
      what: "Alice to see Bob joined",
    });
    for (const [who, client] of [["Alice", alice], ["Bob", bob]]) {
      await waitFor(client, [RoomEvent.Timeline, ClientEvent.Sync], () => client.getRoom(roomId)?.hasEncryptionStateEvent(), {
        what: `${who} to see m.room.encryption in the room state`,
      });
      // The crypto layer picks the room's encryption settings up asynchronously.
      const deadline = Date.now() + WAIT_MS;
      while (!(await client.getCrypto().isEncryptionEnabledInRoom(roomId))) {
        assert.ok(Date.now() < deadline, `${who}'s crypto never treated the room as encrypted`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    ready = true;
  });

  it("Alice's message reaches Bob encrypted and Bob decrypts it", async (t) => {
    if (skipReason) return t.skip(skipReason);
    need(ready, "encrypted room with both joined");
    const { alice, bob } = c;
    const body = `For Bob's eyes only (${Date.now()})`;
    const sent = await step("Alice: send (encrypted) message", () => alice.sendTextMessage(roomId, body));
    const ev = await waitForDecrypted(bob, alice.getUserId(), body);
    assert.equal(ev.getId(), sent.event_id);
    assert.equal(ev.getWireType(), "m.room.encrypted", "the event travelled encrypted");
    assert.equal(ev.getWireContent().algorithm, MEGOLM);
    assert.equal(ev.getWireContent().body, undefined, "the server never saw the plaintext");
  });

  it("Bob's reply reaches Alice encrypted and Alice decrypts it", async (t) => {
    if (skipReason) return t.skip(skipReason);
    need(ready, "encrypted room with both joined");
    const { alice, bob } = c;
    const body = `Secret reply from Bob (${Date.now()})`;
    await step("Bob: send (encrypted) reply", () => bob.sendTextMessage(roomId, body));
    const ev = await waitForDecrypted(alice, bob.getUserId(), body);
    assert.equal(ev.getWireType(), "m.room.encrypted");
    assert.equal(ev.getWireContent().body, undefined, "the server never saw the plaintext");

    // What the server stores is ciphertext: fetch it raw through /messages.
    const raw = await rawRequest("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=5`, {
      accessToken: creds.alice.access_token,
    });
    assert.equal(raw.status, 200, `GET /messages: ${JSON.stringify(raw.body)}`);
    const wire = raw.body.chunk.find((e) => e.event_id === ev.getId());
    assert.ok(wire, "the reply is returned by /messages");
    assert.equal(wire.type, "m.room.encrypted");
    assert.ok(!JSON.stringify(wire).includes("Secret reply"), "no plaintext stored on the server");
  });
});
