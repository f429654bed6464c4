// History from before a join, driven through matrix-js-sdk: Alice on the
// first server (LUXCHAT_E2E_URL) creates a room with shared history and
// talks alone; Bob on the second (LUXCHAT_E2E_URL_B) joins it and scrolls
// back: his server fetches the history with /backfill as his client
// paginates, and he reads every message in order, back to the room's
// creation. Against a single server the scenario still holds (the history
// is simply there).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  BASE_URL_B,
  ClientEvent,
  RoomEvent,
  Preset,
  clientFor,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  timelineBodies,
  waitFor,
} from "../lib/helpers.js";

const serverOf = (userId) => userId.slice(userId.indexOf(":") + 1);

describe("history from before a join (matrix-js-sdk)", () => {
  const creds = {};
  const c = {};

  before(async () => {
    creds.alice = await registerUser("bfalice", { deviceName: "Alice (server A)" });
    creds.bob = await registerUser("bfbob", { deviceName: "Bob (server B)", baseUrl: BASE_URL_B });
    for (const name of Object.keys(creds)) {
      c[name] = clientFor(creds[name]);
      await startAndSync(c[name], { initialSyncLimit: 5 });
    }
  });

  after(() => stopAllClients());

  it("Bob scrolls back through what was said before he joined", async () => {
    const roomId = (await step("Alice creates a public room", () => c.alice.createRoom({ preset: Preset.PublicChat, name: "Archives" }))).room_id;
    const said = [];
    for (let i = 0; i < 30; i++) {
      const body = `archive ${String(i).padStart(2, "0")}`;
      await c.alice.sendTextMessage(roomId, body);
      said.push(body);
    }
    await step("Bob joins via Alice's server", () => c.bob.joinRoom(roomId, { viaServers: [serverOf(creds.alice.user_id)] }));
    await waitFor(c.bob, [ClientEvent.Room, RoomEvent.Name, ClientEvent.Sync], () => c.bob.getRoom(roomId)?.name === "Archives", {
      what: "Bob to see the room",
    });
    const room = c.bob.getRoom(roomId);
    for (let i = 0; i < 20; i++) {
      const first = room.getLiveTimeline().getEvents()[0];
      if (first?.getType() === "m.room.create") break;
      await step(`Bob scrolls back (${i + 1})`, () => c.bob.scrollback(room, 10));
    }
    const bodies = timelineBodies(c.bob, roomId);
    assert.deepEqual(bodies.slice(0, said.length), said, "Bob reads the history in order");
    assert.equal(new Set(room.getLiveTimeline().getEvents().map((e) => e.getId())).size, room.getLiveTimeline().getEvents().length, "no event twice");
    assert.equal(room.getLiveTimeline().getEvents()[0].getType(), "m.room.create", "the history starts with the room's creation");
  });
});
