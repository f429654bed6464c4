// A matrix-js-sdk user that the nio suite talks to (cross-client interop).
//
// Protocol on stdio, one JSON object per line:
//   peer -> stdout {"ready": true, "user_id": "@…"}        once registered and syncing
//   peer waits for an invite, joins, waits for a message whose body starts with
//   "ping " from the inviter, then replies "pong <rest of ping>" and sets its
//   display name to "JS Peer";
//   peer -> stdout {"done": true, "room_id": "!…", "saw": "<ping body>"}
//   on any failure: {"error": "…"} and exit code 1. Bounded by LUXCHAT_E2E_PEER_TIMEOUT_MS.

import {
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  clientFor,
  describeError,
  registerUser,
  startAndSync,
  stopAllClients,
  waitFor,
  WAIT_MS,
} from "../lib/helpers.js";

const overall = Number(process.env.LUXCHAT_E2E_PEER_TIMEOUT_MS || WAIT_MS * 4);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const killer = setTimeout(() => {
  say({ error: `peer timed out after ${overall} ms` });
  process.exit(1);
}, overall);

try {
  const creds = await registerUser("jspeer", { deviceName: "js-sdk interop peer" });
  const client = clientFor(creds);
  await startAndSync(client);
  say({ ready: true, user_id: creds.user_id });

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

  const ping = await waitFor(
    client,
    [RoomEvent.Timeline],
    () =>
      client
        .getRoom(roomId)
        ?.getLiveTimeline()
        .getEvents()
        .find((e) => e.getType() === "m.room.message" && e.getSender() === inviter && String(e.getContent().body).startsWith("ping ")),
    { timeout: overall, what: `a "ping …" message from ${inviter}` },
  );
  const body = ping.getContent().body;
  await client.sendTextMessage(roomId, `pong ${body.slice("ping ".length)}`);
  await client.setDisplayName("JS Peer");
  say({ done: true, room_id: roomId, saw: body });
  stopAllClients();
  clearTimeout(killer);
  process.exit(0);
} catch (e) {
  say({ error: `${e.message || describeError(e)}` });
  process.exit(1);
}
