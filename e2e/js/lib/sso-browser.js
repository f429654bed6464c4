// Drives luxchat's single sign-on in headless Chromium (Debian's, through
// playwright-core) as a user would, for internal/integration's
// TestSSOBrowser. Input in the environment; prints one JSON line:
//   {"userId", "accessToken": matrix-js-sdk's login with the token a
//    whitelisted client got, "confirmed": <login token>,
//    "chooserStyled": bool, "authDone": bool, "cspViolations": [...]}
// The SSO URLs are matrix-js-sdk's (getSsoLoginUrl), as a web client's.
// LUXCHAT_URL        the server
// SSO_APP_REDIRECT   a whitelisted redirectUrl
// SSO_OTHER_REDIRECT a redirectUrl not on the whitelist
// SSO_OPENER         a page of the client that opens the fallback popup
// SSO_USER, SSO_PASSWORD   the provider's user
// SSO_UIA_SESSION    a user-interactive auth session to complete (m.login.sso)
import { chromium } from "playwright-core";
import { createClient } from "matrix-js-sdk";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("LUXCHAT_URL");
const matrix = createClient({ baseUrl: base });
const timeout = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});
const out = { cspViolations: [] };
try {
  const context = await browser.newContext({ locale: "fr-FR" });
  context.setDefaultTimeout(timeout);
  const watch = (page) =>
    page.on("console", (m) => {
      if (/Content.Security.Policy/i.test(m.text())) out.cspViolations.push(m.text());
    });
  context.on("page", watch);

  // The provider's login form (zitadel's example OP).
  const atProvider = async (page) => {
    await page.waitForSelector("#username");
    await page.fill("#username", env("SSO_USER"));
    await page.fill("#password", env("SSO_PASSWORD"));
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit], input[type=submit]")]);
  };
  const loginToken = (u) => new URL(u).searchParams.get("loginToken");

  // 1. No idp: the chooser, in French, styled under the strict CSP; a
  //    whitelisted client gets its token straight away.
  const page = await context.newPage();
  watch(page);
  await page.goto(matrix.getSsoLoginUrl(env("SSO_APP_REDIRECT"), "sso"));
  const title = await page.textContent("h1");
  if (title.trim() !== "Connexion") throw new Error(`chooser title ${title}`);
  const bg = await page.$eval("a.button", (a) => getComputedStyle(a).backgroundColor);
  out.chooserStyled = bg === "rgb(11, 92, 173)";
  await Promise.all([page.waitForNavigation(), page.click("a.button >> text=LuxID")]);
  await atProvider(page);
  await page.waitForURL((u) => u.href.startsWith(env("SSO_APP_REDIRECT")));
  const login = await matrix.loginWithToken(loginToken(page.url()));
  out.userId = login.user_id;
  out.accessToken = login.access_token;

  // 2. Another client: the confirmation page, then the user's click.
  await page.goto(matrix.getSsoLoginUrl(env("SSO_OTHER_REDIRECT"), "sso", "luxid"));
  await atProvider(page);
  const confirm = await page.textContent("h1");
  if (!confirm.startsWith("Continuer vers ")) throw new Error(`confirmation title ${confirm}`);
  if (page.url().includes("loginToken")) throw new Error("redirected without confirmation");
  await Promise.all([page.waitForNavigation(), page.click("a.button")]);
  out.confirmed = loginToken(page.url());

  // 3. The m.login.sso fallback in a popup: its script tells the opener.
  await page.goto(env("SSO_OPENER"));
  const fallback = `${base}/_matrix/client/v3/auth/m.login.sso/fallback/web?session=${encodeURIComponent(env("SSO_UIA_SESSION"))}`;
  const [popup] = await Promise.all([
    context.waitForEvent("page"),
    page.evaluate((u) => {
      window.__authDone = false;
      window.addEventListener("message", (ev) => {
        if (ev.data === "authDone") window.__authDone = true;
      });
      window.open(u, "sso");
    }, fallback),
  ]);
  await popup.waitForLoadState();
  const action = await popup.textContent("p");
  if (!action.includes("Déconnecter des appareils")) throw new Error(`fallback page says ${action}`);
  await Promise.all([popup.waitForNavigation(), popup.click("button.button >> text=LuxID")]);
  await atProvider(popup);
  await page.waitForFunction(() => window.__authDone === true, null, { timeout });
  out.authDone = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
