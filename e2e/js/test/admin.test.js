// The admin API driven by an operator's tool: matrix-bot-sdk's
// SynapseAdminApis, which moderation bots (Draupnir, Mjolnir) use to tell
// whether they are server administrators and to manage users and
// registration tokens. The administrator is made with shared-secret
// registration (run.sh sets registration.shared_secret and passes it in
// LUXCHAT_E2E_SHARED_SECRET).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import Module from "node:module";

// matrix-bot-sdk loads its end-to-end encryption (a native library that
// npm's postinstall fetches from GitHub) whether or not a bot uses it;
// these admin calls do not, so a missing library is replaced by nothing.
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === "@matrix-org/matrix-sdk-crypto-nodejs") {
    try {
      return load.call(this, request, ...rest);
    } catch {
      return {};
    }
  }
  return load.call(this, request, ...rest);
};
const { MatrixClient, LogService, LogLevel } = await import("matrix-bot-sdk");

import { BASE_URL, SERVER_NAME, rawRequest, registerUser, step, uniqueLocalpart } from "../lib/helpers.js";

LogService.setLevel(LogLevel.ERROR);

const SECRET = process.env.LUXCHAT_E2E_SHARED_SECRET;

/** Registers an administrator through POST /_synapse/admin/v1/register. */
async function registerAdmin() {
  const nonce = (await rawRequest("GET", "/_synapse/admin/v1/register")).body.nonce;
  const username = uniqueLocalpart("admin");
  const password = "admin password, long enough";
  const mac = createHmac("sha1", SECRET).update(`${nonce}\0${username}\0${password}\0admin`).digest("hex");
  const res = await rawRequest("POST", "/_synapse/admin/v1/register", { body: { nonce, username, password, admin: true, mac } });
  assert.equal(res.status, 200, `shared-secret registration: ${JSON.stringify(res.body)}`);
  return res.body;
}

describe("admin API (matrix-bot-sdk SynapseAdminApis)", { skip: !SECRET && "LUXCHAT_E2E_SHARED_SECRET is not set" }, () => {
  it("tells administrators from others, manages users and registration tokens", async () => {
    const admin = await registerAdmin();
    const adminClient = new MatrixClient(BASE_URL, admin.access_token);
    const synapse = adminClient.adminApis.synapse;
    const bob = await registerUser("bob");
    const bobClient = new MatrixClient(BASE_URL, bob.access_token);

    assert.equal(await step("isSelfAdmin as the admin", () => synapse.isSelfAdmin()), true);
    assert.equal(await step("isSelfAdmin as Bob", () => bobClient.adminApis.synapse.isSelfAdmin()), false);
    assert.equal(await synapse.isAdmin(bob.user_id), false);

    const carol = `@${uniqueLocalpart("carol")}:${SERVER_NAME}`;
    const created = await step("upsertUser (create)", () =>
      synapse.upsertUser(carol, { password: "carol's password, long enough", displayname: "Carol Marigold", admin: false }),
    );
    assert.equal(created.name, carol);
    const user = await step("getUser", () => synapse.getUser(carol));
    assert.equal(user.displayname, "Carol Marigold");
    assert.equal(user.admin, false);
    assert.equal(user.deactivated, false);
    assert.equal(user.locked, false);

    const page = await step("listUsers by name", () => synapse.listUsers(undefined, 10, carol.slice(1, carol.indexOf(":"))));
    assert.deepEqual(page.users.map((u) => u.name), [carol]);
    assert.equal(page.total, 1);
    const seen = [];
    for await (const u of synapse.listAllUsers({ limit: 2 })) seen.push(u.name);
    for (const id of [admin.user_id, bob.user_id, carol]) assert.ok(seen.includes(id), `listAllUsers misses ${id}: ${seen.length} users`);
    assert.equal(new Set(seen).size, seen.length, "listAllUsers repeated a user across pages");

    const token = await step("createRegistrationToken", () => synapse.createRegistrationToken({ uses_allowed: 2 }));
    assert.equal(token.uses_allowed, 2);
    assert.equal(token.completed, 0);
    const updated = await synapse.updateRegistrationToken(token.token, { uses_allowed: 0 });
    assert.equal(updated.uses_allowed, 0);
    const invalid = await synapse.listRegistrationTokens(false);
    assert.ok(invalid.some((t) => t.token === token.token), "a token with no uses left is not listed as invalid");
    assert.deepEqual(await synapse.getRegistrationToken(token.token), updated);
    await synapse.deleteRegistrationToken(token.token);
    assert.equal(await synapse.getRegistrationToken(token.token), null);

    // Bob, not an administrator, is refused everything.
    await assert.rejects(bobClient.adminApis.synapse.getUser(carol), (e) => e.statusCode === 403 && e.errcode === "M_FORBIDDEN");
    await assert.rejects(bobClient.adminApis.synapse.listRegistrationTokens(), (e) => e.statusCode === 403);
  });
});
