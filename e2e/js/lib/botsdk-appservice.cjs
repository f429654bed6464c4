// An application service built with matrix-bot-sdk (its Appservice and
// Intent), driven by internal/integration's TestAppServiceMatrixBotSDK:
//
//   AS_REGISTRATION='{…}' AS_PORT=… HS_URL=… HS_NAME=… node lib/botsdk-appservice.cjs
//
// It prints one JSON line per thing it receives from the homeserver
// (transactions' events, ephemeral and to-device data, user and alias
// queries) and runs the commands it reads from stdin, one JSON line each
// ({"id", "op": "join" | "send" | "leave", "user", "room", "body"}),
// answering {"kind": "done", "id", "result" | "error"}.
//
// matrix-bot-sdk loads its native crypto module
// (@matrix-org/matrix-sdk-crypto-nodejs) at import time; the module's
// binary is downloaded from GitHub at install, which this machine cannot
// reach. This service does not encrypt, so the module is replaced by one
// that throws if anything ever calls it.
"use strict";

const readline = require("node:readline");

const cryptoPath = require.resolve("@matrix-org/matrix-sdk-crypto-nodejs");
const absentCrypto = () => {
  throw new Error("matrix-sdk-crypto-nodejs is not installed here");
};
const absent = new Proxy(absentCrypto, {
  get: (_, key) => (key === "then" ? undefined : absent),
  construct: absentCrypto,
  apply: absentCrypto,
});
require.cache[cryptoPath] = {
  id: cryptoPath,
  filename: cryptoPath,
  loaded: true,
  exports: new Proxy({}, { get: (_, key) => (key === "__esModule" ? false : absent) }),
};

const { Appservice, LogService, LogLevel, MemoryStorageProvider } = require("matrix-bot-sdk");

LogService.setLevel(LogLevel.ERROR);

const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

async function main() {
  const registration = JSON.parse(process.env.AS_REGISTRATION);
  const as = new Appservice({
    port: Number(process.env.AS_PORT),
    bindAddress: "127.0.0.1",
    homeserverName: process.env.HS_NAME,
    homeserverUrl: process.env.HS_URL,
    registration,
    storage: new MemoryStorageProvider(),
  });

  as.on("room.event", (roomId, ev) =>
    out({ kind: "event", room_id: roomId, event_id: ev.event_id, type: ev.type, sender: ev.sender, state_key: ev.state_key, content: ev.content }),
  );
  as.on("ephemeral.event", (ev) =>
    out({ kind: "ephemeral", type: ev.type, room_id: ev.room_id, sender: ev.sender, to_user_id: ev.to_user_id, to_device_id: ev.to_device_id, content: ev.content }),
  );
  as.on("device_lists", (lists) => out({ kind: "device_lists", changed: lists.changed, removed: lists.removed }));
  as.on("otk.counts", (counts) => out({ kind: "otk_counts", counts }));
  // Users and aliases of the namespaces that nobody created yet: the
  // homeserver asks, the service creates them.
  as.on("query.user", (userId, create) => {
    out({ kind: "query.user", user_id: userId });
    create({ display_name: "Ghost of " + userId.slice(1).split(":")[0] });
  });
  as.on("query.room", (alias, create) => {
    out({ kind: "query.room", alias });
    create({ name: "Bridged " + alias, preset: "public_chat", visibility: "private" });
  });

  await as.begin();
  out({ kind: "ready" });

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    try {
      const intent = as.getIntentForUserId(cmd.user);
      let result = null;
      switch (cmd.op) {
        case "join":
          await intent.ensureRegistered();
          result = await intent.joinRoom(cmd.room);
          break;
        case "send":
          result = await intent.sendText(cmd.room, cmd.body);
          break;
        case "leave":
          await intent.leaveRoom(cmd.room);
          break;
        case "whoami":
          await intent.ensureRegistered();
          result = await intent.underlyingClient.getWhoAmI();
          break;
        default:
          throw new Error("unknown op " + cmd.op);
      }
      out({ kind: "done", id: cmd.id, result });
    } catch (err) {
      out({ kind: "done", id: cmd.id, error: String(err?.body?.errcode ?? err?.message ?? err) });
    }
  }
  as.stop();
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + "\n");
  process.exit(1);
});
