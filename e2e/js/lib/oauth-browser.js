// Logs in to luxchat through the Matrix OAuth 2.0 API with matrix-js-sdk's
// OAuth helpers, the user's part in headless Chromium (Debian's, through
// playwright-core), for internal/integration's TestOAuthBrowser. Input in
// the environment; prints one JSON line:
//   {"clientId", "userId", "deviceId", "accessToken": the first,
//    "refreshedAccessToken": after the SDK's own refresh, "loginTitle",
//    "consentTitle", "synced": bool, "loggedOut": bool, "cspViolations": [...]}
// LUXCHAT_URL      the server
// OAUTH_CALLBACK   the client's callback page (http://127.0.0.1:<port>/callback)
// OAUTH_USER, OAUTH_PASSWORD   a user of the server
import { chromium } from "playwright-core";
import { createClient, OAuth2 } from "matrix-js-sdk";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("LUXCHAT_URL");
const callback = env("OAUTH_CALLBACK");
const timeout = 20000;
const out = { cspViolations: [] };

// 1. Discovery and registration: a native client with a loopback
//    redirect URI (any port).
const anon = createClient({ baseUrl: base });
const metadata = await anon.getAuthMetadata();
const clientId = await OAuth2.registerClient(metadata, {
  client_name: "luxchat e2e",
  "client_name#de": "luxchat E2E-Test",
  client_uri: "https://e2e.example.org/",
  application_type: "native",
  redirect_uris: ["http://127.0.0.1/callback"],
});
out.clientId = clientId;
const oauth = new OAuth2(metadata, { clientId });
const authUrl = await oauth.generateAuthorizationCodeGrantUrl("state-e2e", callback, "query");

// 2. The user logs in on the server's page and allows the client, in
//    German from the browser's language.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});
let code;
try {
  const context = await browser.newContext({ locale: "de-DE" });
  context.setDefaultTimeout(timeout);
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content.Security.Policy/i.test(m.text())) out.cspViolations.push(m.text());
  });
  await page.goto(authUrl);
  out.loginTitle = (await page.textContent("h1")).trim();
  await page.getByLabel("Benutzername").fill(env("OAUTH_USER"));
  await page.getByLabel("Passwort").fill(env("OAUTH_PASSWORD"));
  await Promise.all([page.waitForNavigation(), page.click("button >> text=Anmelden")]);
  out.consentTitle = (await page.textContent("h1")).trim();
  await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click("button >> text=Erlauben")]);
  const params = new URL(page.url()).searchParams;
  if (params.get("state") !== "state-e2e") throw new Error(`state ${params.get("state")}`);
  code = params.get("code");
} finally {
  await browser.close();
}

// 3. The code for tokens; whoami and sync with the access token.
const tokens = await oauth.completeAuthorizationCodeGrant(code, callback);
out.accessToken = tokens.access_token;
let refreshed;
const client = createClient({
  baseUrl: base,
  accessToken: tokens.access_token,
  refreshToken: tokens.refresh_token,
  oauthClientId: clientId,
  deviceId: oauth.context.deviceId,
  onTokenRefresh: (t) => {
    refreshed = t;
  },
});
const who = await client.whoami();
out.userId = who.user_id;
out.deviceId = who.device_id;
if (who.device_id !== oauth.context.deviceId) throw new Error(`device ${who.device_id}, asked for ${oauth.context.deviceId}`);
const sync = await client.http.authedRequest("GET", "/sync", { timeout: "0" });
out.synced = typeof sync.next_batch === "string";

// 4. Once the access token expired, the SDK's own refresh path
//    (TokenRefresher: the refresh token grant) gets new tokens on the
//    server's M_UNKNOWN_TOKEN and retries.
await new Promise((r) => setTimeout(r, (tokens.expires_in ?? 0) * 1000 + 500));
const again = await client.whoami();
if (!refreshed || again.user_id !== who.user_id) throw new Error("no refresh");
out.refreshedAccessToken = refreshed.accessToken;

// 5. Log out: the SDK revokes the tokens at the revocation endpoint.
await client.logout(true);
out.loggedOut = true;
console.log(JSON.stringify(out));
