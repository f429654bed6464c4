// Relations with matrix-js-sdk: Alice edits a message and a freshly loaded
// client shows the edit; Bob reacts; Bob replies in a thread and the thread
// root carries the server's thread summary (and a client with thread
// support lists the thread); the two run a poll to its end with the SDK's
// poll model; Alice shares a location that Bob receives.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";

import {
  ClientEvent,
  RoomEvent,
  Preset,
  SyncState,
  WAIT_MS,
  withTimeout,
  sdk,
  clientFor,
  membershipSeenBy,
  rawRequest,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  waitForMessage,
} from "../lib/helpers.js";

const { PollStartEvent } = await import("matrix-js-sdk/lib/extensible_events_v1/PollStartEvent.js");
const { PollResponseEvent } = await import("matrix-js-sdk/lib/extensible_events_v1/PollResponseEvent.js");
const { PollEndEvent } = await import("matrix-js-sdk/lib/extensible_events_v1/PollEndEvent.js");
const { M_POLL_KIND_DISCLOSED, M_POLL_RESPONSE } = sdk;

/** Wait until client's live timeline of roomId holds an event matching pred. */
function waitForEvent(client, roomId, pred, what) {
  const find = () =>
    client
      .getRoom(roomId)
      ?.getLiveTimeline()
      .getEvents()
      .find((e) => !e.status && pred(e));
  return waitFor(client, [RoomEvent.Timeline, ClientEvent.Sync], find, {
    what,
    describe: () =>
      JSON.stringify(
        (client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []).slice(-8).map((e) => [e.getType(), e.getContent().body]),
      ),
  });
}

describe("relations: edits, reactions, threads, polls and location (matrix-js-sdk)", () => {
  const c = {};
  const creds = {};
  let roomId;
  let original; // event id of the message Alice edits
  let ready = false;

  const need = (cond, what) => assert.ok(cond, `prerequisite missing: ${what} (an earlier step failed)`);

  after(() => stopAllClients());

  it("Alice and Bob share a room", async () => {
    creds.alice = await registerUser("alice");
    creds.bob = await registerUser("bob");
    c.alice = clientFor(creds.alice);
    c.bob = clientFor(creds.bob);
    await startAndSync(c.alice);
    await startAndSync(c.bob);
    const res = await step("Alice: createRoom", () => c.alice.createRoom({ name: "Relations", preset: Preset.PublicChat }));
    roomId = res.room_id;
    await step("Bob: join", () => c.bob.joinRoom(roomId));
    await waitFor(c.alice, [RoomEvent.Timeline], () => membershipSeenBy(c.alice, roomId, c.bob.getUserId()) === "join", {
      what: "Alice to see Bob joined",
    });
    ready = true;
  });

  it("Alice edits a message; a freshly loaded client shows the edit", async () => {
    need(ready, "a shared room");
    const sent = await step("Alice: send the original", () => c.alice.sendTextMessage(roomId, "I like cake"));
    original = sent.event_id;
    await step("Alice: send the edit", () =>
      c.alice.sendMessage(roomId, {
        msgtype: "m.text",
        body: "* I like chocolate cake",
        "m.new_content": { msgtype: "m.text", body: "I like chocolate cake" },
        "m.relates_to": { rel_type: "m.replace", event_id: original },
      }),
    );
    await waitForMessage(c.bob, roomId, c.alice.getUserId(), "* I like chocolate cake");

    // A new client for Bob: everything it knows comes from its initial sync.
    const fresh = clientFor(creds.bob);
    await startAndSync(fresh);
    const ev = await waitFor(
      fresh,
      [RoomEvent.Timeline, ClientEvent.Sync],
      () => {
        const e = fresh.getRoom(roomId)?.findEventById(original);
        return e?.replacingEvent() ? e : undefined;
      },
      { what: "the fresh client to know the original's edit" },
    );
    assert.equal(ev.getContent().body, "I like chocolate cake", "the fresh client shows the edited content");
    assert.equal(ev.getOriginalContent().body, "I like cake", "the original content is kept");

    // The server bundles the edit with the original (unsigned.m.relations).
    const raw = await step("Bob: GET /event of the original", () => c.bob.fetchRoomEvent(roomId, original));
    assert.equal(raw.content.body, "I like cake", "the server does not replace the content");
    assert.equal(raw.unsigned?.["m.relations"]?.["m.replace"]?.content?.["m.new_content"]?.body, "I like chocolate cake");
    fresh.stopClient();
  });

  it("Bob reacts and Alice sees the reaction", async () => {
    need(original, "the original message");
    await step("Bob: react", () =>
      c.bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: original, key: "👍" } }),
    );
    const reaction = await waitForEvent(
      c.alice,
      roomId,
      (e) => e.getType() === "m.reaction" && e.getSender() === c.bob.getUserId(),
      "Alice to see Bob's reaction",
    );
    assert.equal(reaction.getRelation()?.key, "👍");
    const rel = await step("Alice: GET /relations/m.annotation", () =>
      c.alice.fetchRelations(roomId, original, "m.annotation", "m.reaction"),
    );
    assert.deepEqual(
      rel.chunk.map((e) => e.content["m.relates_to"].key),
      ["👍"],
      "the reaction is listed as a child",
    );
  });

  it("Bob replies in a thread; the root carries the thread summary", async () => {
    need(ready, "a shared room");
    const root = await step("Alice: thread root", () => c.alice.sendTextMessage(roomId, "Thread about lunch"));
    for (const body of ["Pizza?", "Or soup"]) {
      await step(`Bob: thread reply ${body}`, () =>
        c.bob.sendMessage(roomId, {
          msgtype: "m.text",
          body,
          "m.relates_to": { rel_type: "m.thread", event_id: root.event_id, is_falling_back: true },
        }),
      );
    }
    const raw = await step("Alice: GET /event of the root", () => c.alice.fetchRoomEvent(roomId, root.event_id));
    const summary = raw.unsigned?.["m.relations"]?.["m.thread"];
    assert.ok(summary, `the root has an m.thread bundle: ${JSON.stringify(raw.unsigned)}`);
    assert.equal(summary.count, 2);
    assert.equal(summary.latest_event.content.body, "Or soup");
    assert.equal(summary.current_user_participated, true, "Alice sent the root");

    // A client with thread support builds its thread list from /threads
    // and the bundled summaries.
    const threaded = clientFor(creds.alice);
    const prepared = new Promise((resolve) => {
      const onSync = (state) => {
        if (state === SyncState.Prepared || state === SyncState.Syncing) {
          threaded.removeListener(ClientEvent.Sync, onSync);
          resolve();
        }
      };
      threaded.on(ClientEvent.Sync, onSync);
    });
    await threaded.startClient({ threadSupport: true, initialSyncLimit: 20 });
    await withTimeout(prepared, WAIT_MS, "the first sync of a client with thread support");
    const room = threaded.getRoom(roomId);
    await step("Alice (threads): fetch the thread list", () => room.fetchRoomThreads());
    const thread = await waitFor(threaded, [RoomEvent.Timeline, ClientEvent.Sync], () => room.getThread(root.event_id), {
      what: "the threaded client to know the thread",
      describe: () => JSON.stringify(room.getThreads().map((t) => t.id)),
    });
    assert.equal(thread.length, 2, "the thread has two replies");
    threaded.stopClient();

    const threads = await rawRequest("GET", `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/threads?include=participated`, {
      accessToken: creds.bob.access_token,
    });
    assert.equal(threads.status, 200, JSON.stringify(threads.body));
    assert.deepEqual(
      threads.body.chunk.map((e) => e.event_id),
      [root.event_id],
      "Bob participated in the thread",
    );
  });

  it("Alice runs a poll; Bob answers; Alice ends it; a late answer does not count", async () => {
    need(ready, "a shared room");
    // The events are built by the SDK, as a client application would.
    const startEv = PollStartEvent.from("Lunch?", ["pizza", "soup"], M_POLL_KIND_DISCLOSED).serialize();
    const [pizza, soup] = new PollStartEvent(startEv).answers.map((a) => a.id);
    const start = await step("Alice: poll start", () => c.alice.sendEvent(roomId, startEv.type, startEv.content));
    await waitForEvent(c.bob, roomId, (e) => e.getId() === start.event_id, "Bob to see the poll");
    const answer = PollResponseEvent.from([soup], start.event_id).serialize();
    await step("Bob: poll response", () => c.bob.sendEvent(roomId, answer.type, answer.content));
    await waitForEvent(c.alice, roomId, (e) => e.getSender() === c.bob.getUserId() && M_POLL_RESPONSE.matches(e.getType()), "Alice to see Bob's answer");
    const end = PollEndEvent.from(start.event_id, "The poll has ended. Top answer: soup").serialize();
    await step("Alice: poll end", () => c.alice.sendEvent(roomId, end.type, end.content));
    const bobsPoll = await waitFor(
      c.bob,
      [RoomEvent.Timeline, ClientEvent.Sync],
      () => {
        const poll = c.bob.getRoom(roomId)?.polls.get(start.event_id);
        return poll?.isEnded ? poll : undefined;
      },
      { what: "Bob's client to see the poll ended" },
    );
    assert.ok(bobsPoll.isEnded);

    // A late answer: stored and relayed, but clients do not count it.
    const late = PollResponseEvent.from([pizza], start.event_id).serialize();
    const lateSent = await step("Bob: a late poll response", () => c.bob.sendEvent(roomId, late.type, late.content));
    await waitForEvent(c.alice, roomId, (e) => e.getId() === lateSent.event_id, "Alice to see the late answer");

    // A client loading the poll afresh reads the answers through /relations.
    const fresh = clientFor(creds.alice);
    await startAndSync(fresh);
    const poll = await waitFor(fresh, [RoomEvent.Timeline, ClientEvent.Sync], () => fresh.getRoom(roomId)?.polls.get(start.event_id), {
      what: "a fresh client to know the poll",
    });
    const responses = await step("Alice (fresh): the poll's responses", () => poll.getResponses());
    assert.ok(poll.isEnded, "the poll is ended");
    assert.deepEqual(
      responses.getRelations().map((e) => e.getSender()),
      [c.bob.getUserId()],
      "only Bob's answer before the end counts",
    );
    assert.deepEqual(
      responses.getRelations().map((e) => M_POLL_RESPONSE.findIn(e.getContent())?.answers),
      [[soup]],
      "the answer counted is soup",
    );
    fresh.stopClient();

    const refs = await step("Bob: GET /relations/m.reference", () =>
      c.bob.fetchRelations(roomId, start.event_id, "m.reference", null, { dir: "f" }),
    );
    assert.deepEqual(
      refs.chunk.map((e) => e.type),
      [answer.type, end.type, late.type],
      "the answers and the end are the poll's references, in order",
    );
    assert.equal(refs.chunk[2].event_id, lateSent.event_id);
  });

  it("Alice shares a location and Bob sees it", async () => {
    need(ready, "a shared room");
    await step("Alice: m.location", () =>
      c.alice.sendMessage(roomId, { msgtype: "m.location", body: "Big Ben", geo_uri: "geo:51.5008,0.1247;u=35" }),
    );
    const ev = await waitForEvent(
      c.bob,
      roomId,
      (e) => e.getContent().msgtype === "m.location",
      "Bob to see Alice's location",
    );
    assert.equal(ev.getContent().geo_uri, "geo:51.5008,0.1247;u=35");
    assert.equal(ev.getSender(), c.alice.getUserId());
  });
});
