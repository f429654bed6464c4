// End-to-end encryption with matrix-js-sdk's Rust crypto (matrix-sdk-crypto-wasm).
//
// Alice and Bob share a room created with m.room.encryption in initial_state and:
//   - exchange messages both ways and decrypt them (the server stores ciphertext only);
//   - Bob logs in on a second device, which decrypts new messages;
//   - both bootstrap cross-signing, Bob cross-signs his second device, and Alice
//     verifies Bob interactively (SAS over to-device messages): Alice's user-signing
//     key signs Bob's master key, so Bob's devices become verified for her;
//   - Alice sets up secret storage, a key backup and a dehydrated device, goes
//     offline; Bob writes while she is away; Alice logs in on a fresh device,
//     restores the backup (she reads her old messages) and rehydrates the
//     dehydrated device (she reads what Bob sent while she was away).

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
  rawRequest,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  withTimeout,
} from "../lib/helpers.js";

const { CryptoEvent, VerificationPhase, VerifierEvent } = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { RustBackupManager } = await import("matrix-js-sdk/lib/rust-crypto/backup.js");

// The SDK waits up to 10 s before its first backup upload (to spread load); not here.
RustBackupManager.maxBackupLoopStartDelayMillis = 0;

const MEGOLM = "m.megolm.v1.aes-sha2";

/** Secret storage keys the "user" knows (entered when asked), by key id. */
const secretStorageKeys = new Map();
const cryptoCallbacks = {
  getSecretStorageKey: async ({ keys }) => {
    const keyId = Object.keys(keys).find((k) => secretStorageKeys.has(k));
    return keyId ? [keyId, secretStorageKeys.get(keyId)] : null;
  },
  cacheSecretStorageKey: (keyId, _keyInfo, key) => secretStorageKeys.set(keyId, key),
};

/** Poll an async condition until it holds (bounded). */
async function until(cond, what, timeout = WAIT_MS * 2) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await cond();
    if (last) return last;
    assert.ok(Date.now() < deadline, `timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("end-to-end encrypted chat (matrix-js-sdk + Rust crypto)", () => {
  const creds = {};
  const c = {};
  let roomId;
  let ready = false;
  const sent = []; // bodies Alice sent, oldest first

  const need = (cond, what) => assert.ok(cond, `prerequisite missing: ${what} (an earlier step failed)`);

  before(async () => {
    creds.alice = await registerUser("ealice", { deviceName: "Alice E2EE" });
    // Bob is on a second, federating server when the fed suite runs this file.
    creds.bob = await registerUser("ebob", { deviceName: "Bob E2EE", baseUrl: BASE_URL_B });
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
      what: `${client.getUserId()} (${client.getDeviceId()}) to decrypt ${JSON.stringify(body)} from ${sender}`,
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

  /** Log in on a new device with the password and start a crypto-enabled client. */
  async function loginNewDevice(who, deviceName) {
    const res = await step(`${who}: log in on a new device`, async () => {
      const tmp = clientFor({ baseUrl: creds[who].baseUrl }, { userId: undefined, accessToken: undefined, deviceId: undefined });
      return tmp.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: creds[who].localpart },
        password: creds[who].password,
        initial_device_display_name: deviceName,
      });
    });
    assert.notEqual(res.device_id, creds[who].device_id, "a new login gets a new device ID");
    const client = clientFor({ ...res, baseUrl: creds[who].baseUrl }, { cryptoCallbacks });
    await withTimeout(client.initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto on ${deviceName}`);
    await startAndSync(client);
    return client;
  }

  /** UIA callback for uploading cross-signing keys: no auth first, the password if asked. */
  const authWithPassword = (who) => async (makeRequest) => {
    try {
      await makeRequest(null);
    } catch (e) {
      if (e.httpStatus !== 401 || !e.data?.session) throw e;
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: creds[who].localpart },
        password: creds[who].password,
        session: e.data.session,
      });
    }
  };

  it("Alice and Bob start clients with Rust crypto and upload device keys", async () => {
    for (const who of ["alice", "bob"]) {
      c[who] = clientFor(creds[who], { cryptoCallbacks });
      await withTimeout(c[who].initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto`);
      await startAndSync(c[who]);
    }
    // Each device's keys must become visible to the other user via /keys/query.
    const bobsDevice = await waitForDevice(c.alice, creds.bob.user_id, creds.bob.device_id);
    assert.ok(bobsDevice.getIdentityKey(), "Bob's device has a curve25519 identity key");
    await waitForDevice(c.bob, creds.alice.user_id, creds.alice.device_id);
  });

  it("Alice creates an encrypted room, Bob joins", async () => {
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
      await until(() => client.getCrypto().isEncryptionEnabledInRoom(roomId), `${who}'s crypto to treat the room as encrypted`, WAIT_MS);
    }
    ready = true;
  });

  it("Alice's message reaches Bob encrypted and Bob decrypts it", async () => {
    need(ready, "encrypted room with both joined");
    const { alice, bob } = c;
    const body = `For Bob's eyes only (${Date.now()})`;
    const res = await step("Alice: send (encrypted) message", () => alice.sendTextMessage(roomId, body));
    sent.push(body);
    const ev = await waitForDecrypted(bob, alice.getUserId(), body);
    assert.equal(ev.getId(), res.event_id);
    assert.equal(ev.getWireType(), "m.room.encrypted", "the event travelled encrypted");
    assert.equal(ev.getWireContent().algorithm, MEGOLM);
    assert.equal(ev.getWireContent().body, undefined, "the server never saw the plaintext");
  });

  it("Bob's reply reaches Alice encrypted and Alice decrypts it", async () => {
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

  it("Bob's second device decrypts new messages", async () => {
    need(ready, "encrypted room with both joined");
    const { alice } = c;
    c.bob2 = await loginNewDevice("bob", "Bob's tablet");
    // Alice learns of the new device through device_lists.changed and /keys/query.
    await waitForDevice(alice, creds.bob.user_id, c.bob2.getDeviceId());
    const body = `Hello, both of Bob's devices (${Date.now()})`;
    await step("Alice: send (encrypted) message", () => alice.sendTextMessage(roomId, body));
    sent.push(body);
    await waitForDecrypted(c.bob2, alice.getUserId(), body);
    await waitForDecrypted(c.bob, alice.getUserId(), body);
  });

  it("cross-signing: bootstrap, Bob signs his second device, Alice verifies Bob (SAS)", async () => {
    need(c.bob2, "Bob's second device");
    const { alice, bob, bob2 } = c;
    for (const [who, client] of [["alice", alice], ["bob", bob]]) {
      await step(`${who}: bootstrap cross-signing`, () =>
        client.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: authWithPassword(who) }),
      );
      assert.ok(await client.getCrypto().isCrossSigningReady(), `${who}'s cross-signing is ready`);
    }
    // Bob's first device signs his second one with the self-signing key.
    await waitForDevice(bob, creds.bob.user_id, bob2.getDeviceId());
    await step("Bob: cross-sign his second device", () => bob.getCrypto().crossSignDevice(bob2.getDeviceId()));
    await until(
      async () => (await alice.getCrypto().getDeviceVerificationStatus(creds.bob.user_id, bob2.getDeviceId()))?.signedByOwner,
      "Alice to see Bob's second device signed by Bob",
    );

    // Interactive verification, Alice ↔ Bob, over to-device messages.
    const bobGotRequest = new Promise((resolve) => bob.once(CryptoEvent.VerificationRequestReceived, resolve));
    const aliceReq = await step("Alice: request verification of Bob's device", () =>
      alice.getCrypto().requestDeviceVerification(creds.bob.user_id, creds.bob.device_id),
    );
    const bobReq = await withTimeout(bobGotRequest, WAIT_MS, "Bob to receive the verification request");
    await step("Bob: accept", () => bobReq.accept());
    await until(() => aliceReq.phase === VerificationPhase.Ready, "the request to be ready on Alice's side");
    const aliceVerifier = await step("Alice: start SAS", () => aliceReq.startVerification("m.sas.v1"));
    const bobVerifier = await until(() => bobReq.verifier, "Bob's verifier");
    const shown = {};
    for (const [who, v] of [["alice", aliceVerifier], ["bob", bobVerifier]]) {
      v.on(VerifierEvent.ShowSas, (sas) => {
        shown[who] = sas.sas.emoji?.map((e) => e[1]).join(" ");
        sas.confirm();
      });
    }
    await step("SAS verification", () => Promise.all([aliceVerifier.verify(), bobVerifier.verify()]), WAIT_MS * 2);
    assert.ok(shown.alice && shown.alice === shown.bob, `both sides showed the same emoji: ${JSON.stringify(shown)}`);
    await until(
      async () => (await alice.getCrypto().getUserVerificationStatus(creds.bob.user_id)).isCrossSigningVerified(),
      "Alice to trust Bob's identity",
    );
    // Bob's second device is trusted through his self-signing key.
    await until(
      async () => (await alice.getCrypto().getDeviceVerificationStatus(creds.bob.user_id, bob2.getDeviceId()))?.crossSigningVerified,
      "Alice to trust Bob's second device",
    );
    // The server keeps Alice's signature on Bob's master key (made with her user-signing key).
    const asAlice = await rawRequest("POST", "/_matrix/client/v3/keys/query", {
      accessToken: creds.alice.access_token,
      body: { device_keys: { [creds.bob.user_id]: [], [creds.alice.user_id]: [] } },
    });
    const userSigningKeyIds = Object.keys(asAlice.body.user_signing_keys?.[creds.alice.user_id]?.keys || {});
    assert.equal(userSigningKeyIds.length, 1, `Alice sees her own user-signing key: ${JSON.stringify(asAlice.body.user_signing_keys)}`);
    const sigs = asAlice.body.master_keys?.[creds.bob.user_id]?.signatures?.[creds.alice.user_id] || {};
    assert.ok(sigs[userSigningKeyIds[0]], `Alice's user-signing signature on Bob's master key: ${JSON.stringify(asAlice.body.master_keys)}`);
  });

  it("key backup and dehydrated device: Alice restores on a fresh device", async () => {
    need(ready && c.bob2, "encrypted room and earlier steps");
    const { alice, bob } = c;
    const crypto = alice.getCrypto();
    const recoveryKey = await crypto.createRecoveryKeyFromPassphrase();
    await step("Alice: set up secret storage and a new key backup", () =>
      crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => recoveryKey, setupNewSecretStorage: true, setupNewKeyBackup: true }),
    );
    const version = await until(() => crypto.getActiveSessionBackupVersion(), "the backup to be active");
    assert.ok(await crypto.isDehydrationSupported(), "the server supports dehydrated devices");
    await step("Alice: create a dehydrated device", () => crypto.startDehydration({ createNewKey: true }));
    const dehydrated = await rawRequest("GET", "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device", {
      accessToken: creds.alice.access_token,
    });
    assert.equal(dehydrated.status, 200, `GET dehydrated_device: ${JSON.stringify(dehydrated.body)}`);

    const body = `Something to remember (${Date.now()})`;
    await step("Alice: send (encrypted) message", () => alice.sendTextMessage(roomId, body));
    sent.push(body);
    await waitForDecrypted(bob, alice.getUserId(), body);
    // Every session Alice holds reaches the backup.
    const want = (await crypto.exportRoomKeys()).length;
    await until(async () => {
      const info = await rawRequest("GET", `/_matrix/client/v3/room_keys/version/${version}`, { accessToken: creds.alice.access_token });
      return info.status === 200 && info.body.count >= want;
    }, `the backup to hold Alice's ${want} sessions`);

    // Alice goes offline; Bob (who sees the dehydrated device) writes meanwhile.
    alice.stopClient();
    await waitForDevice(bob, creds.alice.user_id, dehydrated.body.device_id);
    const away = `While you were away (${Date.now()})`;
    // A new megolm session, whose key only Alice's devices that exist now get
    // (the backup knows Bob's earlier session, which would decrypt this too).
    await bob.getCrypto().forceDiscardSession(roomId);
    await step("Bob: send while Alice is offline", () => bob.sendTextMessage(roomId, away));

    const fresh = await loginNewDevice("alice", "Alice's new laptop");
    c.alice3 = fresh;
    const fc = fresh.getCrypto();
    // The fresh device needs its own user's public cross-signing keys first.
    assert.ok(await fc.userHasCrossSigningKeys(creds.alice.user_id, true), "the fresh device sees Alice's cross-signing keys");
    await step("fresh device: load cross-signing keys from secret storage", () =>
      fc.bootstrapCrossSigning({ authUploadDeviceSigningKeys: authWithPassword("alice") }),
    );
    await step("fresh device: load the backup key from secret storage", () => fc.loadSessionBackupPrivateKeyFromSecretStorage());
    await step("fresh device: check the backup", () => fc.checkKeyBackupAndEnable());
    const restored = await step("fresh device: restore the backup", () => fc.restoreKeyBackup(), WAIT_MS * 2);
    assert.ok(restored.imported >= 1, `imported ${restored.imported} of ${restored.total} keys`);
    // Old messages in the fresh device's timeline decrypt with the restored keys.
    await waitForDecrypted(fresh, creds.alice.user_id, body);
    // Bob's new session is not in the backup: the message stays encrypted…
    const awayEvent = await waitFor(
      fresh,
      [RoomEvent.Timeline, ClientEvent.Sync],
      () => {
        const last = fresh.getRoom(roomId)?.getLiveTimeline().getEvents().findLast((e) => e.getSender() === creds.bob.user_id && e.isEncrypted());
        return last?.isDecryptionFailure() ? last : undefined;
      },
      { what: "the fresh device to hold Bob's message sent while Alice was away, still encrypted" },
    );
    // …until the dehydrated device, which received Bob's room key while Alice was away, is rehydrated.
    const rehydrated = new Promise((resolve, reject) => {
      fresh.once(CryptoEvent.RehydrationCompleted, resolve);
      fresh.once(CryptoEvent.RehydrationError, (msg) => reject(new Error(`rehydration failed: ${msg}`)));
    });
    await step("fresh device: rehydrate the dehydrated device", () => fc.startDehydration(), WAIT_MS * 2);
    await withTimeout(rehydrated, WAIT_MS, "rehydration to complete");
    const decrypted = await waitForDecrypted(fresh, creds.bob.user_id, away);
    assert.equal(decrypted.getId(), awayEvent.getId());
  });
});
