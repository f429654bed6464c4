// Simplified sliding sync (MSC4186) driven by matrix-js-sdk's own client:
// Alice's client syncs with SlidingSync (POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync with pos and
// timeout in the query, lists with ranges, required_state pairs, room
// subscriptions, extensions) while Bob uses /sync. Alice sees Bob's invite
// with its stripped state, joins, reads Bob's messages as they come (the
// long poll wakes), sees the room's name, Bob typing, and a to-device
// message.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";

import {
  BASE_URL,
  ClientEvent,
  RoomEvent,
  clientFor,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  withTimeout,
  WAIT_MS,
} from "../lib/helpers.js";

const { SlidingSync, SlidingSyncEvent, SlidingSyncState } = await import("matrix-js-sdk/lib/sliding-sync.js");

describe("matrix-js-sdk SlidingSync against luxchat", () => {
  let alice, bob, ss, roomId;
  const responses = [];

  after(() => {
    ss?.stop();
    alice?.stopClient();
    stopAllClients();
  });

  it("Alice starts a sliding sync client; Bob a /sync one", async () => {
    const a = await registerUser("alice");
    const b = await registerUser("bob");
    bob = clientFor(b);
    await startAndSync(bob);
    alice = clientFor(a);
    const lists = new Map([["all", { ranges: [[0, 19]], timeline_limit: 10, required_state: [["*", "*"]] }]]);
    ss = new SlidingSync(BASE_URL, lists, { timeline_limit: 20, required_state: [["*", "*"]] }, alice, 5000);
    ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
      if (state === SlidingSyncState.Complete && resp) responses.push(resp);
      if (err) console.warn("[sliding sync]", err.httpStatus, err.message);
    });
    const prepared = waitFor(alice, [ClientEvent.Sync], () => alice.getSyncState() === "PREPARED" || alice.getSyncState() === "SYNCING", { what: "Alice's first sliding sync" });
    await alice.startClient({ slidingSync: ss });
    await prepared;
    assert.ok(responses.length >= 1, "a sliding sync response arrived");
    assert.ok(responses[0].pos, "the response has a pos");
  });

  it("Alice sees Bob's invite (stripped state: the room's name) and joins", async () => {
    await step("Bob creates a named room and invites Alice", async () => {
      ({ room_id: roomId } = await bob.createRoom({ name: "Sliding room", invite: [alice.getUserId()] }));
    });
    await waitFor(alice, [ClientEvent.Room, RoomEvent.MyMembership], () => alice.getRoom(roomId)?.getMyMembership() === "invite", { what: "Alice sees the invite" });
    assert.equal(alice.getRoom(roomId).name, "Sliding room");
    await alice.joinRoom(roomId);
    await waitFor(alice, [RoomEvent.MyMembership, RoomEvent.Timeline], () => alice.getRoom(roomId)?.getMyMembership() === "join", { what: "Alice's join through sliding sync" });
  });

  it("Alice reads Bob's messages as they come (the long poll wakes)", async () => {
    for (const body of ["one", "two", "three"]) {
      await bob.sendTextMessage(roomId, body);
    }
    await waitFor(alice, [RoomEvent.Timeline], () => {
      const bodies = alice.getRoom(roomId)?.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body) ?? [];
      return bodies.join(",") === "one,two,three";
    }, { what: "Bob's three messages, once each, in order" });
    // Every response after the first named the pos of the one before.
    assert.ok(responses.length >= 2);
  });

  it("Alice sees Bob typing (typing extension) and his to-device message", async () => {
    await bob.sendTyping(roomId, true, 30000);
    await waitFor(alice, [ClientEvent.Event, "RoomMember.typing"], () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.typing === true, { what: "Bob typing" });
    const got = new Promise((resolve) => alice.on(ClientEvent.ToDeviceEvent, (ev) => ev.getType() === "org.example.ping" && resolve(ev)));
    await bob.sendToDevice("org.example.ping", new Map([[alice.getUserId(), new Map([[alice.getDeviceId(), { n: 1 }]])]]));
    const ev = await withTimeout(got, WAIT_MS, "Alice's to-device message");
    assert.equal(ev.getContent().n, 1);
  });
});
