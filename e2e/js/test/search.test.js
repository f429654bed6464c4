// Server-side search and content reports through matrix-js-sdk, the way a
// client's search box and "report" menu use them.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";

import { Preset, clientFor, registerUser, startAndSync, step, stopAllClients } from "../lib/helpers.js";

describe("server-side search and reports (matrix-js-sdk)", () => {
  const c = {};
  let roomId;
  const sent = [];

  after(() => stopAllClients());

  it("finds messages of a shared room, ranked, paginated, never another user's rooms", async () => {
    const alice = await registerUser("alice");
    const bob = await registerUser("bob");
    const carol = await registerUser("carol");
    c.alice = clientFor(alice);
    c.bob = clientFor(bob);
    c.carol = clientFor(carol);
    await startAndSync(c.bob);

    ({ room_id: roomId } = await step("Alice creates a public room", () =>
      c.alice.createRoom({ preset: Preset.PublicChat, name: "Harbour logistics" }),
    ));
    await step("Bob joins", () => c.bob.joinRoom(roomId));
    for (let i = 0; i < 14; i++) {
      const { event_id: id } = await step(`Alice sends message ${i}`, () =>
        c.alice.sendTextMessage(roomId, `container ${i} arrives at dock ${i % 3}`),
      );
      sent.push(id);
    }
    const { room_id: secret } = await step("Carol creates her own room", () =>
      c.carol.createRoom({ preset: Preset.PublicChat }),
    );
    await step("Carol posts there", () => c.carol.sendTextMessage(secret, "container of carol's secrets"));

    // The SDK's search helper, then its pagination of the same search.
    const res = await step("Bob searches for 'container'", () => c.bob.searchRoomEvents({ term: "container" }));
    assert.equal(res.count, 14, "count: Alice's 14 messages, none of Carol's room");
    assert.ok(res.results.length > 0 && res.results.length <= 14);
    assert.ok(res.highlights.includes("container"), `highlights ${res.highlights}`);
    let all = res;
    for (let i = 0; all.next_batch && i < 5; i++) {
      all = await step("Bob loads more results", () => c.bob.backPaginateRoomEventsSearch(all));
    }
    const ids = all.results.map((r) => r.context.getEvent().getId());
    assert.equal(new Set(ids).size, 14, "every message exactly once");
    assert.ok(ids.every((id) => sent.includes(id)), "only Alice's messages");

    // Raw API: recent order, a room filter, context around a result.
    const raw = await step("POST /search (recent, with context)", () =>
      c.bob.search({
        body: {
          search_categories: {
            room_events: {
              search_term: "dock 2",
              order_by: "recent",
              filter: { rooms: [roomId], limit: 3 },
              event_context: { before_limit: 1, after_limit: 1, include_profile: true },
            },
          },
        },
      }),
    );
    const re = raw.search_categories.room_events;
    assert.equal(re.results.length, 3);
    assert.equal(re.results[0].result.content.body, "container 11 arrives at dock 2", "newest first");
    assert.equal(re.results[0].context.events_before.length, 1);
    assert.ok(re.results[0].context.profile_info[alice.user_id], "profile of the sender");
    assert.ok(re.next_batch, "more results than the limit");
  });

  it("reports an event Bob can see and refuses one he cannot", async () => {
    assert.ok(roomId, "prerequisite: the first test created the room");
    await step("Bob reports a message", () => c.bob.reportEvent(roomId, sent[0], -100, "spam"));
    await assert.rejects(
      () => c.carol.reportEvent(roomId, sent[0], -100, "not joined"),
      (e) => e.httpStatus === 404 && e.errcode === "M_NOT_FOUND",
      "a user who is not in the room gets 404",
    );
    await assert.rejects(
      () => c.bob.reportEvent(roomId, "$nope:" + roomId.split(":")[1], -100, "unknown"),
      (e) => e.httpStatus === 404 && e.errcode === "M_NOT_FOUND",
      "an unknown event is 404",
    );
  });
});
