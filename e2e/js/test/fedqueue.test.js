// End-to-end encryption across two federating servers with matrix-js-sdk's
// Rust crypto: Alice on the first server (LUXCHAT_E2E_URL), Bob on the
// second (LUXCHAT_E2E_URL_B). Everything crosses the servers' outbound
// queues: the room's events, the to-device messages that carry the megolm
// room keys (m.direct_to_device), device list updates when Bob adds a
// device (m.device_list_update), and key queries and claims
// (/user/keys/query, /user/keys/claim). Against a single server (no
// LUXCHAT_E2E_URL_B) both users live on it and the scenario still holds.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  ClientEvent,
  MatrixEventEvent,
  RoomEvent,
  RoomMemberEvent,
  BASE_URL_B,
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

describe("encrypted chat across two servers (matrix-js-sdk + Rust crypto)", () => {
  const creds = {};
  const c = {};
  let roomId;

  before(async () => {
    creds.alice = await registerUser("fqalice", { deviceName: "Alice (server A)" });
    creds.bob = await registerUser("fqbob", { deviceName: "Bob (server B)", baseUrl: BASE_URL_B });
  });

  after(() => stopAllClients());

  const plaintext = (ev) => (ev.getType() === "m.room.message" && !ev.isDecryptionFailure() ? ev.getContent().body : undefined);

  function waitForDecrypted(client, sender, body) {
    const find = () =>
      client
        .getRoom(roomId)
        ?.getLiveTimeline()
        .getEvents()
        .find((e) => e.getSender() === sender && e.isEncrypted() && plaintext(e) === body);
    return waitFor(client, [RoomEvent.Timeline, MatrixEventEvent.Decrypted, ClientEvent.Sync], find, {
      timeout: WAIT_MS * 2,
      what: `${client.getUserId()} (${client.getDeviceId()}) to decrypt ${JSON.stringify(body)} from ${sender}`,
    });
  }

  async function waitForDevice(client, userId, deviceId) {
    const deadline = Date.now() + WAIT_MS * 2;
    let last;
    while (Date.now() < deadline) {
      const map = await client.getCrypto().getUserDeviceInfo([userId], true);
      last = map.get(userId);
      if (last && last.has(deviceId)) return last.get(deviceId);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.fail(`${client.getUserId()} never learned ${userId}'s device ${deviceId}; knows ${JSON.stringify(last ? [...last.keys()] : [])}`);
  }

  it("both start crypto clients and see each other's device across servers", async () => {
    for (const who of ["alice", "bob"]) {
      c[who] = clientFor(creds[who]);
      await withTimeout(c[who].initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto`);
      await startAndSync(c[who]);
    }
    await waitForDevice(c.alice, creds.bob.user_id, creds.bob.device_id);
    await waitForDevice(c.bob, creds.alice.user_id, creds.alice.device_id);
  });

  it("Alice creates an encrypted room and invites Bob, who joins", async () => {
    const { alice, bob } = c;
    const res = await step("Alice: createRoom with m.room.encryption", () =>
      alice.createRoom({ name: "Across servers", initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }] }),
    );
    roomId = res.room_id;
    await step("Alice: invite Bob", () => alice.invite(roomId, bob.getUserId()));
    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Bob to see the invite",
    });
    await step("Bob: join", () => bob.joinRoom(roomId));
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "join", {
      what: "Alice to see Bob joined",
    });
    await waitFor(bob, [RoomEvent.Timeline, ClientEvent.Sync], () => bob.getRoom(roomId)?.hasEncryptionStateEvent(), {
      what: "Bob to see m.room.encryption",
    });
  });

  it("messages cross both ways encrypted and are decrypted", async () => {
    const { alice, bob } = c;
    const toBob = `over the wire to B (${Date.now()})`;
    await step("Alice: send", () => alice.sendTextMessage(roomId, toBob));
    const ev = await waitForDecrypted(bob, alice.getUserId(), toBob);
    assert.equal(ev.getWireType(), "m.room.encrypted");
    const toAlice = `over the wire to A (${Date.now()})`;
    await step("Bob: send", () => bob.sendTextMessage(roomId, toAlice));
    await waitForDecrypted(alice, bob.getUserId(), toAlice);
  });

  it("Bob's new device is announced to Alice's server and decrypts new messages", async () => {
    const { alice } = c;
    const res = await step("Bob: log in on a second device", () =>
      clientFor({ baseUrl: creds.bob.baseUrl }, { userId: undefined, accessToken: undefined, deviceId: undefined }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: creds.bob.localpart },
        password: creds.bob.password,
        initial_device_display_name: "Bob's tablet",
      }),
    );
    c.bob2 = clientFor({ ...res, baseUrl: creds.bob.baseUrl });
    await withTimeout(c.bob2.initRustCrypto({ useIndexedDB: false }), WAIT_MS, "bob2: initRustCrypto");
    await startAndSync(c.bob2);
    await waitForDevice(alice, creds.bob.user_id, c.bob2.getDeviceId());
    const body = `for both of Bob's devices (${Date.now()})`;
    await step("Alice: send", () => alice.sendTextMessage(roomId, body));
    await waitForDecrypted(c.bob2, alice.getUserId(), body);
    await waitForDecrypted(c.bob, alice.getUserId(), body);
  });
});
