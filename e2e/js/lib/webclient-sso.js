// Logs in to the embedded web client with single sign-on in headless
// Chromium (Debian's, through playwright-core), for internal/integration's
// TestWebClientSSOBrowser: the login page lists the server's identity
// providers (GET /login, m.login.sso); the user picks one, logs in at the
// provider, comes back to the client with a login token and lands in the
// room list, with no confirmation page (the client is the server's own).
// Prints one JSON line: {"userId", "confirmPage": bool, "buttons": [...],
// "problems": [...]}.
// LUXCHAT_URL, SSO_IDP_NAME, SSO_USER, SSO_PASSWORD, CHROMIUM
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("LUXCHAT_URL");
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
const out = { problems: [], confirmPage: false };
try {
  const context = await browser.newContext({ locale: "de-LU" });
  context.setDefaultTimeout(30000);
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => out.problems.push(`page error: ${e.message}`));
  await page.goto(base + "/");
  // German, from the browser's language.
  await page.getByRole("heading", { name: /^Bei .* anmelden$/ }).waitFor();
  out.buttons = await page.locator(".sso button").allTextContents();
  await page.getByRole("button", { name: `Weiter mit ${env("SSO_IDP_NAME")}`, exact: true }).click();
  await page.waitForSelector("#username");
  await page.fill("#username", env("SSO_USER"));
  await page.fill("#password", env("SSO_PASSWORD"));
  await page.click("button[type=submit], input[type=submit]");
  // Back at the client: the room list (or, wrongly, a confirmation page).
  const landed = await Promise.race([
    page.getByRole("heading", { name: "Unterhaltungen" }).waitFor().then(() => "client"),
    page.waitForURL((u) => u.pathname.startsWith("/_matrix/"), { waitUntil: "load" }).then(() => new Promise((r) => setTimeout(() => r("server page"), 3000))),
  ]);
  out.confirmPage = landed !== "client";
  if (landed === "client") {
    out.userId = await page.evaluate(() => JSON.parse(localStorage.getItem("luxchat.session")).userId);
    out.url = page.url();
    for (const v of await page.evaluate(() => window.__csp)) out.problems.push(`CSP violation: ${v}`);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
