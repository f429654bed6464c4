// Rooms shared across two servers, driven through matrix-js-sdk: Alice on
// the first server (LUXCHAT_E2E_URL) creates a room; Bob on the second
// (LUXCHAT_E2E_URL_B) joins it by id through Alice's server
// (make_join/send_join) and they talk (the servers' outbound queues), Carol
// on the second server is invited and declines (invite, then
// make_leave/send_leave), and Dave knocks (make_knock/send_knock). Against
// a single server (no LUXCHAT_E2E_URL_B) everyone lives on it and the
// scenario still holds.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  BASE_URL_B,
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  Preset,
  clientFor,
  membershipSeenBy,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  waitForMessage,
} from "../lib/helpers.js";

const serverOf = (userId) => userId.slice(userId.indexOf(":") + 1);

describe("rooms across two servers (matrix-js-sdk)", () => {
  const creds = {};
  const c = {};
  let roomId;
  let knockRoomId;

  before(async () => {
    creds.alice = await registerUser("fralice", { deviceName: "Alice (server A)" });
    for (const name of ["bob", "carol", "dave"]) {
      creds[name] = await registerUser(`fr${name}`, { deviceName: `${name} (server B)`, baseUrl: BASE_URL_B });
    }
    for (const name of Object.keys(creds)) {
      c[name] = clientFor(creds[name]);
      await startAndSync(c[name]);
    }
  });

  after(() => stopAllClients());

  const memberIs = (client, room, userId, membership) =>
    waitFor(client, [RoomMemberEvent.Membership, RoomEvent.Timeline, ClientEvent.Room, ClientEvent.Sync], () => membershipSeenBy(client, room, userId) === membership, {
      what: `${client.getUserId()} to see ${userId} as ${membership} in ${room}`,
    });

  it("Bob joins Alice's room through her server and sees its state", async () => {
    roomId = (await step("Alice creates a public room", () => c.alice.createRoom({ preset: Preset.PublicChat, name: "Préfecture" }))).room_id;
    await step("Bob joins by room id via Alice's server", () => c.bob.joinRoom(roomId, { viaServers: [serverOf(creds.alice.user_id)] }));
    await waitFor(c.bob, [ClientEvent.Room, RoomEvent.Name, ClientEvent.Sync], () => c.bob.getRoom(roomId)?.name === "Préfecture", {
      what: "Bob to see the room's name",
    });
    await memberIs(c.bob, roomId, creds.alice.user_id, "join");
    await memberIs(c.alice, roomId, creds.bob.user_id, "join");
  });

  it("Alice and Bob talk across the servers", async () => {
    assert.ok(roomId, "the room of the previous step");
    await step("Alice sends", () => c.alice.sendTextMessage(roomId, "bonjour de la police"));
    await waitForMessage(c.bob, roomId, creds.alice.user_id, "bonjour de la police");
    await step("Bob answers", () => c.bob.sendTextMessage(roomId, "bonjour du gouvernement"));
    await waitForMessage(c.alice, roomId, creds.bob.user_id, "bonjour du gouvernement");
  });

  it("Carol is invited across servers and declines", async () => {
    assert.ok(roomId, "the room of the previous step");
    await step("Alice invites Carol", () => c.alice.invite(roomId, creds.carol.user_id));
    await waitFor(c.carol, [ClientEvent.Room, RoomMemberEvent.Membership, ClientEvent.Sync], () => c.carol.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Carol to see the invite",
    });
    await step("Carol declines", () => c.carol.leave(roomId));
    await memberIs(c.alice, roomId, creds.carol.user_id, "leave");
  });

  it("Dave knocks on a room of the other server", async () => {
    knockRoomId = (
      await step("Alice creates a knock room", () =>
        c.alice.createRoom({
          preset: Preset.PrivateChat,
          name: "Guichet",
          initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
        }),
      )
    ).room_id;
    await step("Dave knocks", () => c.dave.knockRoom(knockRoomId, { viaServers: [serverOf(creds.alice.user_id)], reason: "bonjour" }));
    await memberIs(c.alice, knockRoomId, creds.dave.user_id, "knock");
    await step("Alice lets Dave in", () => c.alice.invite(knockRoomId, creds.dave.user_id));
    await step("Dave joins", () => c.dave.joinRoom(knockRoomId, { viaServers: [serverOf(creds.alice.user_id)] }));
    await memberIs(c.alice, knockRoomId, creds.dave.user_id, "join");
  });
});
