// A js-sdk user with Rust crypto who reads what the server's alert bot
// posts (internal/alertbot's tests drive it).
//
// Modes (argv[2]):
//   owner   registers, creates an encrypted room (m.room.encryption in
//           initial_state), invites ALERTBOT_USER and waits until it joined;
//           says {"ready": true, "user_id", "device_id", "room_id"}.
//   member  registers and says {"ready": true, "user_id", "device_id"}; then
//           waits for an invite, joins and waits until its crypto treats the
//           room as encrypted; says {"joined": true, "room_id"}.
// Then it reads commands on stdin, one JSON object per line:
//   {"cmd": "expect", "body": "…"}  waits for an event of ALERTBOT_USER whose
//        body is this text and answers {"saw": body, "wire_type",
//        "algorithm", "encrypted", "sender_device", "session_id", "shield"}: a clear event
//        answers with its wire type m.room.message, an undecryptable one
//        {"error"} when the wait ends.
//   {"cmd": "invite", "user": "@…"} the owner invites a user: {"invited": id}.
//   {"cmd": "send", "body": "…"} sends an m.text with this body (Rust crypto
//        encrypts it in an encrypted room): {"sent": event id}.
//   {"cmd": "leave"} leaves the room: {"left": room id}.
//   {"cmd": "quit"}
// Any failure: {"error": "…"} and exit code 1. Bounded by
// LUXCHAT_E2E_PEER_TIMEOUT_MS (default 5 minutes) overall.

import readline from "node:readline";
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

const mode = process.argv[2];
const bot = process.env.ALERTBOT_USER;
const overall = Number(process.env.LUXCHAT_E2E_PEER_TIMEOUT_MS || 300000);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const fail = (e) => {
  say({ error: `${e?.message || describeError(e)}` });
  process.exit(1);
};
const killer = setTimeout(() => fail(new Error(`reader timed out after ${overall} ms`)), overall);

async function encryptedInCrypto(client, roomId) {
  const deadline = Date.now() + WAIT_MS;
  while (!(await client.getCrypto().isEncryptionEnabledInRoom(roomId))) {
    if (Date.now() > deadline) throw new Error(`Rust crypto never treated ${roomId} as encrypted within ${WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  if (!bot || !["owner", "member"].includes(mode)) throw new Error("usage: ALERTBOT_USER=@… alertbot-reader.mjs owner|member");
  const creds = await registerUser(mode === "owner" ? "alertowner" : "alertmember", { deviceName: "alert reader" });
  const client = clientFor(creds);
  await withTimeout(client.initRustCrypto({ useIndexedDB: false }), WAIT_MS, "initRustCrypto");
  await startAndSync(client);
  let roomId;
  if (mode === "owner") {
    ({ room_id: roomId } = await client.createRoom({
      name: "alerts",
      invite: [bot],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    }));
    await waitFor(client, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => client.getRoom(roomId)?.getMember(bot)?.membership === "join", {
      what: `${bot} joining ${roomId}`,
    });
    await encryptedInCrypto(client, roomId);
    say({ ready: true, user_id: creds.user_id, device_id: creds.device_id, room_id: roomId });
  } else {
    say({ ready: true, user_id: creds.user_id, device_id: creds.device_id });
    const invited = await waitFor(client, [ClientEvent.Room, RoomMemberEvent.Membership], () =>
      client.getRooms().find((r) => r.getMyMembership() === "invite"),
      { timeout: overall, what: "an invite" },
    );
    roomId = invited.roomId;
    await client.joinRoom(roomId);
    await waitFor(client, [RoomEvent.Timeline, ClientEvent.Sync], () => client.getRoom(roomId)?.hasEncryptionStateEvent(), {
      what: `m.room.encryption in ${roomId}`,
    });
    await encryptedInCrypto(client, roomId);
    say({ joined: true, room_id: roomId });
  }

  const timeline = () => client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
  const fromBot = () => timeline().filter((e) => e.getSender() === bot && e.getType() !== "m.room.member");
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.cmd === "quit") break;
    if (cmd.cmd === "invite") {
      await client.invite(roomId, cmd.user);
      say({ invited: cmd.user });
      continue;
    }
    if (cmd.cmd === "send") {
      const { event_id: eventId } = await client.sendMessage(roomId, { msgtype: "m.text", body: cmd.body });
      say({ sent: eventId });
      continue;
    }
    if (cmd.cmd === "leave") {
      await client.leave(roomId);
      say({ left: roomId });
      continue;
    }
    if (cmd.cmd !== "expect") throw new Error(`unknown command ${line}`);
    const ev = await waitFor(
      client,
      [RoomEvent.Timeline, MatrixEventEvent.Decrypted],
      () => fromBot().find((e) => !e.isDecryptionFailure() && e.getContent().body === cmd.body),
      {
        what: `${bot}'s message "${cmd.body}"`,
        describe: () =>
          JSON.stringify(
            fromBot()
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
    let shield;
    try {
      const info = await client.getCrypto().getEncryptionInfoForEvent(ev);
      shield = info ? { colour: info.shieldColour, reason: info.shieldReason } : null;
    } catch (e) {
      shield = { error: String(e) };
    }
    say({
      saw: ev.getContent().body,
      type: ev.getType(),
      wire_type: ev.getWireType(),
      algorithm: ev.getWireContent().algorithm,
      encrypted: ev.isEncrypted(),
      sender_device: ev.getWireContent().device_id,
      session_id: ev.getWireContent().session_id,
      shield,
    });
  }
  stopAllClients();
  clearTimeout(killer);
  process.exit(0);
} catch (e) {
  fail(e);
}
