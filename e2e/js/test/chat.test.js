// Core chat scenario driven through matrix-js-sdk's high-level API, the way a
// client app uses it: two users register, share a room, talk, see each
// other's profile / typing / read receipts, scroll back through history and
// one leaves.
//
// The steps share state and run in order; a step whose prerequisite failed
// fails with a message saying so rather than with a confusing error.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  BASE_URL,
  WAIT_MS,
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  Preset,
  Direction,
  ReceiptType,
  clientFor,
  membershipSeenBy,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  timelineBodies,
  waitFor,
  waitForMessage,
  withTimeout,
} from "../lib/helpers.js";

const SCROLLBACK_COUNT = 60;

describe("two users chat through luxchat (matrix-js-sdk)", () => {
  /** @type {{alice?: any, bob?: any}} */
  const creds = {};
  /** @type {{alice?: import("matrix-js-sdk").MatrixClient, bob?: import("matrix-js-sdk").MatrixClient}} */
  const c = {};
  let roomId;
  let synced = false;
  let bobJoined = false;
  let lastBobMessage; // MatrixEvent as seen by Alice

  const need = (cond, what) => assert.ok(cond, `prerequisite missing: ${what} (an earlier step failed)`);

  before(() => {
    console.log(`luxchat under test: ${BASE_URL}`);
  });

  after(() => {
    stopAllClients();
  });

  it("registers Alice and Bob (m.login.dummy) and both complete an initial /sync", async () => {
    creds.alice = await registerUser("alice", { deviceName: "Alice's laptop" });
    creds.bob = await registerUser("bob", { deviceName: "Bob's phone" });
    assert.notEqual(creds.alice.user_id, creds.bob.user_id);
    assert.match(creds.alice.user_id, /^@alice_[^:]+:.+$/, "Alice's user ID");
    assert.match(creds.bob.user_id, /^@bob_[^:]+:.+$/, "Bob's user ID");

    c.alice = clientFor(creds.alice);
    c.bob = clientFor(creds.bob);

    const who = await step("GET /account/whoami as Alice", () => c.alice.whoami());
    assert.equal(who.user_id, creds.alice.user_id, "whoami returns the registered user");

    await startAndSync(c.alice);
    await startAndSync(c.bob);
    synced = true;
  });

  it("Alice creates a room and invites Bob; Bob sees the invite via /sync", async () => {
    need(synced, "registered, syncing clients");
    const alice = c.alice;
    const bob = c.bob;

    const res = await step("Alice: POST /createRoom", () =>
      alice.createRoom({ name: "Tea party", topic: "Strictly no cats", preset: Preset.PrivateChat }),
    );
    assert.match(res.room_id ?? "", /^!/, `createRoom returned a room ID: ${JSON.stringify(res)}`);
    roomId = res.room_id;

    // Alice's own client sees the room she created, with her as joined member.
    await waitFor(alice, [ClientEvent.Room, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, alice.getUserId()) === "join", {
      what: "Alice to see herself joined to the room she created",
      describe: () => `membership=${membershipSeenBy(alice, roomId, alice.getUserId())}`,
    });
    const aliceRoom = alice.getRoom(roomId);
    await waitFor(alice, [RoomEvent.Name, RoomEvent.Timeline], () => aliceRoom.name === "Tea party", {
      what: "Alice to see the room name 'Tea party'",
      describe: () => JSON.stringify(aliceRoom.name),
    });
    // m.room.name comes after any m.room.encryption in createRoom's event order.
    assert.ok(
      !aliceRoom.hasEncryptionStateEvent(),
      "the server made the new private room end-to-end encrypted (m.room.encryption in its state); this plaintext " +
        "scenario needs a server configured with encryption.default: false (run.sh does that)",
    );

    await step("Alice: POST /rooms/{roomId}/invite Bob", () => alice.invite(roomId, bob.getUserId()));

    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Bob to see an invite to Alice's room in /sync (rooms.invite)",
      describe: () => `room=${!!bob.getRoom(roomId)} myMembership=${bob.getRoom(roomId)?.getMyMembership()}`,
    });
    const inviteEvent = bob.getRoom(roomId).getMember(bob.getUserId())?.events.member;
    assert.ok(inviteEvent, "Bob's invite has an m.room.member event in invite_state");
    assert.equal(inviteEvent.getSender(), alice.getUserId(), "the invite was sent by Alice");
    assert.equal(inviteEvent.getContent().membership, "invite");
  });

  it("Bob's invite shows the room name (stripped state in invite_state)", async () => {
    need(roomId && c.bob?.getRoom(roomId), "Bob has the invite");
    const room = c.bob.getRoom(roomId);
    await waitFor(c.bob, [RoomEvent.Name, ClientEvent.Sync], () => room.name === "Tea party", {
      timeout: 3000,
      what: "Bob's invite to show the room name 'Tea party'",
      describe: () => `room name ${JSON.stringify(room.name)}; invite_state types: ${JSON.stringify(
        room.currentState.events ? [...room.currentState.events.keys()] : [],
      )}`,
    });
  });

  it("Bob joins; both see Bob as a joined member", async () => {
    need(roomId && c.bob?.getRoom(roomId), "Bob has the invite");
    const { alice, bob } = c;
    await step("Bob: POST /join/{roomId}", () => bob.joinRoom(roomId));
    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership, RoomEvent.Timeline], () => bob.getRoom(roomId)?.getMyMembership() === "join", {
      what: "Bob to see himself joined",
      describe: () => `myMembership=${bob.getRoom(roomId)?.getMyMembership()}`,
    });
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "join", {
      what: "Alice to see Bob's join in the room",
      describe: () => `Bob's membership as seen by Alice: ${membershipSeenBy(alice, roomId, bob.getUserId())}`,
    });
    // Bob, now joined, sees the room's full state: its name, topic and Alice as creator.
    const room = bob.getRoom(roomId);
    await waitFor(bob, [RoomEvent.Name, RoomEvent.Timeline], () => room.name === "Tea party", {
      what: "Bob to see the room name after joining",
      describe: () => JSON.stringify(room.name),
    });
    assert.equal(room.currentState.getStateEvents("m.room.topic", "")?.getContent().topic, "Strictly no cats", "Bob sees the room topic");
    assert.equal(room.getMember(alice.getUserId())?.membership, "join", "Bob sees Alice as joined");
    assert.equal(room.currentState.getStateEvents("m.room.create", "")?.getSender(), alice.getUserId(), "Bob sees Alice created the room");
    bobJoined = true;
  });

  it("Alice and Bob exchange messages and each sees the other's in the timeline", async () => {
    need(bobJoined, "Bob joined the room");
    const { alice, bob } = c;
    const hello = `Hello Bob! (${Date.now()})`;
    const reply = `Hi Alice, nice to see you (${Date.now()})`;

    const sent = await step("Alice: PUT /rooms/{roomId}/send/m.room.message", () => alice.sendTextMessage(roomId, hello));
    assert.match(sent.event_id ?? "", /^\$/, `send returned an event ID: ${JSON.stringify(sent)}`);
    const seenByBob = await waitForMessage(bob, roomId, alice.getUserId(), hello);
    assert.equal(seenByBob.getId(), sent.event_id, "Bob sees the same event ID that Alice's send returned");
    assert.equal(seenByBob.getContent().msgtype, "m.text");

    await step("Bob: send reply", () => bob.sendTextMessage(roomId, reply));
    lastBobMessage = await waitForMessage(alice, roomId, bob.getUserId(), reply);

    // Both timelines show the conversation in the same order.
    for (const [who, client] of [["Alice", alice], ["Bob", bob]]) {
      const bodies = timelineBodies(client, roomId);
      const i = bodies.indexOf(hello);
      const j = bodies.indexOf(reply);
      assert.ok(i >= 0 && j > i, `${who}'s timeline shows Alice's message before Bob's reply: ${JSON.stringify(bodies)}`);
    }
  });

  it("Alice sets a display name and Bob sees it on her membership event", async () => {
    need(bobJoined, "Bob joined the room");
    const { alice, bob } = c;
    const name = "Alice Liddell";
    await step("Alice: PUT /profile/{userId}/displayname", () => alice.setDisplayName(name));

    const profile = await step("Bob: GET /profile/{alice}", () => bob.getProfileInfo(alice.getUserId()));
    assert.equal(profile.displayname, name, "Bob reads Alice's new display name from her profile");

    const room = bob.getRoom(roomId);
    const member = await waitFor(
      bob,
      [RoomMemberEvent.Name, RoomMemberEvent.Membership, RoomEvent.Timeline],
      () => {
        const m = room.getMember(alice.getUserId());
        return m && m.events.member?.getContent().displayname === name ? m : undefined;
      },
      {
        what: `Bob to see an m.room.member event for Alice with displayname ${JSON.stringify(name)}`,
        describe: () => JSON.stringify(room.getMember(alice.getUserId())?.events.member?.getContent()),
      },
    );
    assert.equal(member.membership, "join", "the display-name change keeps Alice joined");
    assert.equal(member.name, name, "Bob's client shows Alice under her new name");
  });

  it("Bob sees Alice typing, then stop typing", async () => {
    need(bobJoined, "Bob joined the room");
    const { alice, bob } = c;
    const aliceAsSeenByBob = () => bob.getRoom(roomId)?.getMember(alice.getUserId());

    await step("Alice: PUT /rooms/{roomId}/typing (typing=true)", () => alice.sendTyping(roomId, true, 20000));
    await waitFor(bob, [RoomMemberEvent.Typing], () => aliceAsSeenByBob()?.typing === true, {
      what: "Bob to see Alice typing (m.typing ephemeral event)",
      describe: () => `typing=${aliceAsSeenByBob()?.typing}`,
    });

    await step("Alice: PUT /rooms/{roomId}/typing (typing=false)", () => alice.sendTyping(roomId, false, 0));
    await waitFor(bob, [RoomMemberEvent.Typing], () => aliceAsSeenByBob()?.typing === false, {
      what: "Bob to see Alice stop typing",
      describe: () => `typing=${aliceAsSeenByBob()?.typing}`,
    });
  });

  it("Bob sees Alice's read receipt on his message", async () => {
    need(bobJoined && lastBobMessage, "Bob's message seen by Alice");
    const { alice, bob } = c;
    const eventId = lastBobMessage.getId();
    await step("Alice: POST /rooms/{roomId}/receipt/m.read/{eventId}", () => alice.sendReadReceipt(lastBobMessage));
    const room = bob.getRoom(roomId);
    // ignoreSynthesized: only a receipt that really came from the server counts.
    await waitFor(bob, [RoomEvent.Receipt], () => room.getEventReadUpTo(alice.getUserId(), true) === eventId, {
      what: `Bob to see Alice's m.read receipt on ${eventId} (m.receipt ephemeral event)`,
      describe: () => `Alice's real receipt points at ${room.getEventReadUpTo(alice.getUserId(), true)}`,
    });
    const receipt = room.getReadReceiptForUserId(alice.getUserId(), true, ReceiptType.Read);
    assert.equal(receipt?.eventId, eventId, "Alice's m.read receipt points at Bob's message");
    assert.equal(typeof receipt?.data?.ts, "number", `the receipt carries a timestamp: ${JSON.stringify(receipt)}`);
  });

  it(`Bob, on a new device, scrolls back through ${SCROLLBACK_COUNT} older messages in order`, async () => {
    need(bobJoined, "Bob joined the room");
    const { alice } = c;
    const bodies = [];
    for (let i = 1; i <= SCROLLBACK_COUNT; i++) {
      const body = `history #${String(i).padStart(2, "0")}`;
      bodies.push(body);
      await step(`Alice: send ${body}`, () => alice.sendTextMessage(roomId, body));
    }
    const last = `after history (${Date.now()})`;
    await step("Alice: send final message", () => alice.sendTextMessage(roomId, last));

    // Bob logs in on a second device (POST /login) and starts with a small initial sync,
    // as a fresh client app would; the older history must come from /messages.
    const bob2 = await step("Bob: log in on a second device", async () => {
      const tmp = clientFor({}, { userId: undefined, accessToken: undefined, deviceId: undefined });
      const res = await tmp.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: creds.bob.localpart },
        password: creds.bob.password,
        initial_device_display_name: "Bob's tablet",
      });
      assert.equal(res.user_id, creds.bob.user_id, "login returns Bob's user ID");
      assert.notEqual(res.device_id, creds.bob.device_id, "a new login gets a new device ID");
      return clientFor(res);
    });
    await startAndSync(bob2, { initialSyncLimit: 10 });
    await waitForMessage(bob2, roomId, alice.getUserId(), last);
    const room = bob2.getRoom(roomId);
    const initialCount = timelineBodies(bob2, roomId).filter((b) => b.startsWith("history #")).length;
    assert.ok(
      initialCount < SCROLLBACK_COUNT,
      `initial /sync with timeline limit 10 must not return all ${SCROLLBACK_COUNT} history messages (got ${initialCount}); the filter's room.timeline.limit was ignored`,
    );

    // Scroll back like a client does when the user scrolls up, until we have them all.
    const deadline = Date.now() + WAIT_MS * 3;
    let rounds = 0;
    while (!timelineBodies(bob2, roomId).includes(bodies[0])) {
      assert.ok(Date.now() < deadline, `scrollback did not reach ${bodies[0]} in time; have ${JSON.stringify(timelineBodies(bob2, roomId))}`);
      assert.ok(rounds < 30, `scrollback did not reach ${bodies[0]} after ${rounds} pages; have ${JSON.stringify(timelineBodies(bob2, roomId))}`);
      const before = room.getLiveTimeline().getEvents().length;
      const atStart = room.getLiveTimeline().getPaginationToken(Direction.Backward) === null;
      assert.ok(!atStart, `reached the start of the room without seeing ${bodies[0]}; have ${JSON.stringify(timelineBodies(bob2, roomId))}`);
      await withTimeout(
        step("Bob: scrollback (GET /rooms/{roomId}/messages?dir=b)", () => bob2.scrollback(room, 20)),
        WAIT_MS,
        "scrollback page",
      );
      rounds += 1;
      const afterCount = room.getLiveTimeline().getEvents().length;
      assert.ok(
        afterCount > before || room.getLiveTimeline().getPaginationToken(Direction.Backward) === null,
        `scrollback page ${rounds} added no events but the server still gave a pagination token`,
      );
    }
    const history = timelineBodies(bob2, roomId).filter((b) => b.startsWith("history #"));
    assert.deepEqual(history, bodies, `Bob sees all ${SCROLLBACK_COUNT} history messages exactly once, oldest first`);
    const all = timelineBodies(bob2, roomId);
    assert.ok(all.indexOf(last) > all.indexOf(bodies.at(-1)), "the newest message comes after the history");
    assert.ok(rounds >= 1, "scrollback was actually needed");
    bob2.stopClient();
  });

  it("Bob leaves; Alice sees the leave", async () => {
    need(bobJoined, "Bob joined the room");
    const { alice, bob } = c;
    await step("Bob: POST /rooms/{roomId}/leave", () => bob.leave(roomId));
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "leave", {
      what: "Alice to see Bob's membership become 'leave'",
      describe: () => `Bob's membership as seen by Alice: ${membershipSeenBy(alice, roomId, bob.getUserId())}`,
    });
    const leaveEvent = alice.getRoom(roomId).getMember(bob.getUserId()).events.member;
    assert.equal(leaveEvent.getSender(), bob.getUserId(), "Bob left by himself (not kicked)");
    await waitFor(bob, [RoomMemberEvent.Membership, ClientEvent.Room, RoomEvent.MyMembership], () => bob.getRoom(roomId)?.getMyMembership() === "leave", {
      what: "Bob's own client to see that he left (rooms.leave in /sync)",
      describe: () => `Bob's own membership: ${bob.getRoom(roomId)?.getMyMembership()}`,
    });
    const joined = await step("Bob: GET /joined_rooms", () => bob.getJoinedRooms());
    assert.ok(!joined.joined_rooms.includes(roomId), `the room is no longer in Bob's joined rooms: ${JSON.stringify(joined)}`);
  });
});
