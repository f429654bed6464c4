// Resets cross-signing keys with matrix-js-sdk (Rust crypto) from a
// session that luxchat's OAuth 2.0 API issued, through the m.oauth
// user-interactive auth stage, for internal/integration's
// TestOAuthCrossSigningResetSDK. The SDK bootstraps cross-signing, then
// resets it: the 401 names the approval page; this prints
//   {"approve": url, "stages": [...]}
// and waits for a line on stdin (the test approved in its browser), then
// retries with the session alone and prints
//   {"done": true, "master": <the new master key>}
// Input in the environment: LUXCHAT_URL, ACCESS_TOKEN, USER_ID, DEVICE_ID.
import { createInterface } from "node:readline";
import { createClient, ClientEvent } from "matrix-js-sdk";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const client = createClient({
  baseUrl: env("LUXCHAT_URL"),
  accessToken: env("ACCESS_TOKEN"),
  userId: env("USER_ID"),
  deviceId: env("DEVICE_ID"),
});
await client.initRustCrypto({ useIndexedDB: false });
const synced = new Promise((resolve) => client.once(ClientEvent.Sync, resolve));
await client.startClient({ initialSyncLimit: 1 });
await synced;
const crypto = client.getCrypto();

// The first keys need no auth.
await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: (makeRequest) => makeRequest(null) });
const first = (await crypto.getCrossSigningKeyId()) ?? "";

// A reset: m.oauth, approved in the browser, then the session alone.
let approved = false;
await crypto.bootstrapCrossSigning({
  setupNewCrossSigning: true,
  authUploadDeviceSigningKeys: async (makeRequest) => {
    try {
      await makeRequest(null);
    } catch (e) {
      const url = e.data?.params?.["m.oauth"]?.url;
      if (e.httpStatus !== 401 || !e.data?.session || !url) throw e;
      console.log(JSON.stringify({ approve: url, stages: e.data.flows.map((f) => f.stages) }));
      await lines.next();
      await makeRequest({ session: e.data.session });
      approved = true;
    }
  },
});
const master = await crypto.getCrossSigningKeyId();
if (!approved || !master || master === first) throw new Error(`reset without approval or no new key: ${first} → ${master}`);
client.stopClient();
console.log(JSON.stringify({ done: true, master }));
process.exit(0);
