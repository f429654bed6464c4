// Incoming webhooks read by matrix-js-sdk: an administrator (registered
// with the shared secret run.sh configures) makes a hook for Alice's room;
// Alertmanager's firing notification posted to the hook's URL reaches
// Alice's client as the alerts bot's m.notice, and the resolution edits it
// (Alice's client shows the edited content) and answers it.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

import {
  BASE_URL,
  SERVER_NAME,
  ClientEvent,
  Preset,
  RoomEvent,
  clientFor,
  rawRequest,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  uniqueLocalpart,
  waitFor,
} from "../lib/helpers.js";

const SECRET = process.env.LUXCHAT_E2E_SHARED_SECRET;

// An Alertmanager notification (webhook_config, version 4) of one alert.
function alertmanager(status, endsAt) {
  return {
    version: "4",
    groupKey: '{}:{alertname="DiskFull"}',
    status,
    receiver: "luxchat",
    groupLabels: { alertname: "DiskFull" },
    commonLabels: { alertname: "DiskFull", severity: "warning", instance: "files-1" },
    commonAnnotations: { summary: "Disk almost full" },
    externalURL: "http://alertmanager.example:9093",
    alerts: [
      {
        status,
        labels: { alertname: "DiskFull", severity: "warning", instance: "files-1" },
        annotations: { summary: "Disk almost full", description: "/srv is 97% full" },
        startsAt: "2026-12-07T10:00:00Z",
        endsAt,
        generatorURL: "http://prometheus.example:9090/graph?g0.expr=disk",
        fingerprint: "0f1e2d3c4b5a6978",
      },
    ],
  };
}

async function registerAdmin() {
  const nonce = (await rawRequest("GET", "/_synapse/admin/v1/register")).body.nonce;
  const username = uniqueLocalpart("admin");
  const password = "correct horse battery staple";
  const mac = createHmac("sha1", SECRET).update(`${nonce}\0${username}\0${password}\0admin`).digest("hex");
  const res = await rawRequest("POST", "/_synapse/admin/v1/register", { body: { nonce, username, password, admin: true, mac } });
  assert.equal(res.status, 200, `shared-secret registration: ${JSON.stringify(res.body)}`);
  return res.body.access_token;
}

describe("incoming webhooks (matrix-js-sdk)", { skip: !SECRET && "LUXCHAT_E2E_SHARED_SECRET is not set (run.sh sets it)" }, () => {
  after(() => stopAllClients());
  const bot = `@alerts:${SERVER_NAME}`;
  let alice, roomId, hookURL, firing;

  it("an administrator makes a hook for Alice's room", async () => {
    const adminToken = await registerAdmin();
    alice = clientFor(await registerUser("alice"));
    await startAndSync(alice);
    roomId = (await step("Alice: createRoom", () => alice.createRoom({ name: "Ops alerts", preset: Preset.PrivateChat }))).room_id;
    // The bot must be invited to an invite-only room first.
    const refused = await rawRequest("POST", "/_luxchat/admin/v1/webhooks", { accessToken: adminToken, body: { room: roomId } });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    await step("Alice: invite the bot", () => alice.invite(roomId, bot));
    const made = await rawRequest("POST", "/_luxchat/admin/v1/webhooks", { accessToken: adminToken, body: { room: roomId, name: "prometheus" } });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    hookURL = BASE_URL + made.body.webhook.url.slice(made.body.webhook.url.indexOf("/_luxchat/hooks/"));
  });

  it("a firing alert reaches Alice's client as the bot's notice", async () => {
    assert.ok(hookURL, "prerequisite: a hook");
    const res = await fetch(hookURL, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(alertmanager("firing", "0001-01-01T00:00:00Z")) });
    assert.equal(res.status, 200, await res.text());
    firing = await waitFor(
      alice,
      [RoomEvent.Timeline, ClientEvent.Sync],
      () => alice.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getSender() === bot && e.getType() === "m.room.message"),
      { what: "Alice to see the alert" },
    );
    const c = firing.getContent();
    assert.equal(c.msgtype, "m.notice");
    assert.match(c.body, /FIRING \[warning\] DiskFull: Disk almost full/);
    assert.match(c.body, /\/srv is 97% full/);
    assert.match(c.body, /instance=files-1/);
    assert.match(c.formatted_body, /<a href="http:\/\/prometheus\.example:9090\/graph\?g0\.expr=disk">Source<\/a>/);
  });

  it("its resolution edits the message and answers it", async () => {
    assert.ok(firing, "prerequisite: the firing alert");
    const res = await fetch(hookURL, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(alertmanager("resolved", "2026-12-07T10:30:00Z")) });
    assert.equal(res.status, 200, await res.text());
    await waitFor(alice, [RoomEvent.Timeline, ClientEvent.Sync], () => firing.replacingEvent(), { what: "Alice's client to apply the edit" });
    assert.match(firing.getContent().body, /RESOLVED \[warning\] DiskFull/, "the client shows the edited alert");
    assert.match(firing.getOriginalContent().body, /FIRING/);
    const reply = await waitFor(
      alice,
      [RoomEvent.Timeline, ClientEvent.Sync],
      () => alice.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getSender() === bot && e.replyEventId === firing.getId()),
      { what: "Alice to see the answer to the alert" },
    );
    assert.match(reply.getContent().body, /Resolved: DiskFull/);
  });
});
