// Discovery through matrix-js-sdk: a room published in the room directory
// is found from another account, and a user who opts in to the user
// directory (account data lu.luxchat.directory) is found by someone who
// shares no room with them, then vanishes when opting out.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";

import { Preset, Visibility, clientFor, registerUser, startAndSync, step, stopAllClients, uniqueLocalpart } from "../lib/helpers.js";

describe("room and user directories (matrix-js-sdk)", () => {
  const c = {};
  const tag = uniqueLocalpart("dir").replace(/[^a-z0-9]/g, "");
  let roomId;

  const need = (cond, what) => assert.ok(cond, `prerequisite missing: ${what} (an earlier step failed)`);

  after(() => {
    stopAllClients();
  });

  it("registers Alice, Bob and Carol", async () => {
    for (const name of ["alice", "bob", "carol"]) {
      c[name] = clientFor(await registerUser(name));
    }
    // Carol's client syncs: setAccountData waits for the change to come back.
    await startAndSync(c.carol);
  });

  it("Alice publishes a room and Bob finds it with client.publicRooms", async () => {
    need(c.alice && c.bob, "clients");
    const res = await step("createRoom with visibility public", () =>
      c.alice.createRoom({ visibility: Visibility.Public, preset: Preset.PublicChat, name: `Directory ${tag}`, topic: "found by search" }),
    );
    roomId = res.room_id;
    const page = await step("POST /publicRooms with a search term", () =>
      c.bob.publicRooms({ filter: { generic_search_term: tag } }),
    );
    assert.deepEqual(
      page.chunk.map((r) => r.room_id),
      [roomId],
      `publicRooms for ${tag}: ${JSON.stringify(page)}`,
    );
    const entry = page.chunk[0];
    assert.equal(entry.name, `Directory ${tag}`);
    assert.equal(entry.topic, "found by search");
    assert.equal(entry.num_joined_members, 1);
    assert.equal(entry.join_rule, "public");
    assert.equal(entry.world_readable, false);
    assert.equal(entry.guest_can_join, false);
    const vis = await c.bob.getRoomDirectoryVisibility(roomId);
    assert.equal(vis.visibility, "public");
  });

  it("Alice unpublishes the room and it leaves the directory", async () => {
    need(roomId, "published room");
    await step("PUT /directory/list/room private", () => c.alice.setRoomDirectoryVisibility(roomId, Visibility.Private));
    const page = await c.bob.publicRooms({ filter: { generic_search_term: tag } });
    assert.deepEqual(page.chunk, [], "unpublished room still listed");
  });

  it("Carol opts in to the user directory and Bob, sharing no room, finds her; opting out hides her", async () => {
    need(c.bob && c.carol, "clients");
    await step("set Carol's display name", () => c.carol.setDisplayName(`Carol Zéphyr ${tag}`));
    const find = async () => (await c.bob.searchUserDirectory({ term: `zephyr ${tag}` })).results.map((u) => u.user_id);

    assert.deepEqual(await find(), [], "Carol is listed before opting in");
    await step("opt in (lu.luxchat.directory visible: true)", () =>
      c.carol.setAccountData("lu.luxchat.directory", { visible: true }),
    );
    const found = await c.bob.searchUserDirectory({ term: `ZEPHYR ${tag}` });
    assert.deepEqual(found.results.map((u) => u.user_id), [c.carol.getUserId()]);
    assert.equal(found.results[0].display_name, `Carol Zéphyr ${tag}`);
    assert.equal(found.limited, false);

    await step("opt out (visible: false)", () => c.carol.setAccountData("lu.luxchat.directory", { visible: false }));
    assert.deepEqual(await find(), [], "Carol is still listed after opting out");
  });
});
