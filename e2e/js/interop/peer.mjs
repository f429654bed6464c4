// A matrix-js-sdk user that the nio suite talks to (cross-client interop).
//
// Protocol on stdio, one JSON object per line:
//   peer -> stdout {"ready": true, "user_id": "@…"}        once registered and syncing
//   peer waits for an invite, joins, waits for a message whose body starts with
//   "ping " from the inviter, then replies "pong <rest of ping>" and sets its
//   display name to "JS Peer";
//   peer -> stdout {"done": true, "room_id": "!…", "saw": "<ping body>"}
//   on any failure: {"error": "…"} and exit code 1. Bounded by LUXCHAT_E2E_PEER_TIMEOUT_MS.
//
// With --encrypted the peer runs Rust crypto (initRustCrypto, keys in memory) and
// "ready" also carries "device_id"; the room must be encrypted (m.room.encryption):
// the peer waits until its crypto treats the room as encrypted, accepts the ping only
// once it has decrypted it (it arrived as m.room.encrypted), replies encrypted
// (js-sdk's default: room keys are shared with unverified devices too) and adds
// "wire_type" and "algorithm" of the ping it decrypted to "done".

import {
  ClientEvent,
  MatrixEventEvent,
  RoomEvent,
  RoomMemberEvent,
  clientFor,
  describeError,
  registerUser,
  startAndSync,
  stopAllClients,
  waitFor,
  withTimeout,
  WAIT_MS,
} from "../lib/helpers.js";

const encrypted = process.argv.includes("--encrypted");
const overall = Number(process.env.LUXCHAT_E2E_PEER_TIMEOUT_MS || WAIT_MS * 4);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const killer = setTimeout(() => {
  say({ error: `peer timed out after ${overall} ms` });
  process.exit(1);
}, overall);

try {
  const creds = await registerUser("jspeer", { deviceName: "js-sdk interop peer" });
  const client = clientFor(creds);
  if (encrypted) await withTimeout(client.initRustCrypto({ useIndexedDB: false }), WAIT_MS, "initRustCrypto");
  await startAndSync(client);
  say({ ready: true, user_id: creds.user_id, ...(encrypted ? { device_id: creds.device_id } : {}) });

  // Wait for an invite to any room and join it.
  const invited = await waitFor(
    client,
    [ClientEvent.Room, RoomMemberEvent.Membership],
    () => client.getRooms().find((r) => r.getMyMembership() === "invite"),
    { timeout: overall, what: "an invite for the js-sdk peer" },
  );
  const roomId = invited.roomId;
  const inviter = invited.getMember(creds.user_id)?.events.member?.getSender();
  await client.joinRoom(roomId);

  if (encrypted) {
    await waitFor(client, [RoomEvent.Timeline, ClientEvent.Sync], () => client.getRoom(roomId)?.hasEncryptionStateEvent(), {
      what: `m.room.encryption in the state of ${roomId}`,
    });
    // The crypto layer picks the room's encryption settings up asynchronously.
    const deadline = Date.now() + WAIT_MS;
    while (!(await client.getCrypto().isEncryptionEnabledInRoom(roomId))) {
      if (Date.now() > deadline) throw new Error(`Rust crypto never treated ${roomId} as encrypted within ${WAIT_MS} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const timeline = () => client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
  const ping = await waitFor(
    client,
    [RoomEvent.Timeline, MatrixEventEvent.Decrypted],
    () =>
      timeline().find(
        (e) =>
          e.getType() === "m.room.message" &&
          e.getSender() === inviter &&
          (!encrypted || (e.isEncrypted() && !e.isDecryptionFailure())) &&
          String(e.getContent().body).startsWith("ping "),
      ),
    {
      timeout: overall,
      what: `a ${encrypted ? "decrypted " : ""}"ping …" message from ${inviter}`,
      describe: () =>
        JSON.stringify(
          timeline()
            .filter((e) => e.getSender() === inviter)
            .slice(-5)
            .map((e) => ({
              wire: e.getWireType(),
              type: e.getType(),
              body: e.getContent().body,
              decryptionFailure: e.isDecryptionFailure() ? e.decryptionFailureReason : undefined,
            })),
        ),
    },
  );
  const body = ping.getContent().body;
  await client.sendTextMessage(roomId, `pong ${body.slice("ping ".length)}`);
  await client.setDisplayName("JS Peer");
  const how = encrypted ? { wire_type: ping.getWireType(), algorithm: ping.getWireContent().algorithm } : {};
  say({ done: true, room_id: roomId, saw: body, ...how });
  stopAllClients();
  clearTimeout(killer);
  process.exit(0);
} catch (e) {
  say({ error: `${e.message || describeError(e)}` });
  process.exit(1);
}
