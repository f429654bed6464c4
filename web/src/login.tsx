import { useEffect, useState } from "preact/hooks";
import { t } from "./i18n.ts";
import * as mx from "./matrix.ts";
import { interactive, Logo } from "./app.tsx";
import { Settings } from "./settings.tsx";

/** Login: password, single sign-on (a button per identity provider) and, where the server allows it, registration. */
export function Login({ error, onLogin }: { error?: string; onLogin: (s: mx.Session) => void }) {
  const [options, setOptions] = useState<mx.LoginOptions | null>(null);
  const [registration, setRegistration] = useState<mx.Registration>("closed");
  const [registering, setRegistering] = useState(false);
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState(error && t("login.failed", { error }));

  useEffect(() => {
    mx.loginOptions().then(setOptions, (e) => {
      setOptions({ password: true, sso: [] });
      setFailure(t("login.failed", { error: String(e.message ?? e) }));
    });
    mx.registrationMode().then(setRegistration, () => {});
  }, []);
  useEffect(() => {
    if (options) interactive();
  }, [options]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setFailure(undefined);
    try {
      onLogin(registering ? await mx.register(user.trim(), password, token.trim() || undefined) : await mx.passwordLogin(user.trim(), password));
    } catch (err) {
      setFailure(t(registering ? "login.registerFailed" : "login.failed", { error: String((err as Error).message ?? err) }));
      setBusy(false);
    }
  };

  const server = window.location.host;
  const showForm = registering || options?.password !== false;
  return (
    <main class="login">
      <div class="login-card">
        <Logo />
        <h1>{registering ? t("login.register") : t("login.title", { server })}</h1>
        {showForm && (
          <form onSubmit={submit} aria-busy={busy}>
            <label>
              {t("login.username")}
              <input name="username" autocomplete="username" required value={user} onInput={(e) => setUser(e.currentTarget.value)} />
            </label>
            <label>
              {t("login.password")}
              <input
                name="password"
                type="password"
                autocomplete={registering ? "new-password" : "current-password"}
                required
                value={password}
                onInput={(e) => setPassword(e.currentTarget.value)}
              />
            </label>
            {registering && registration === "token" && (
              <label>
                {t("login.token")}
                <input name="token" required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
              </label>
            )}
            <button type="submit" class="primary" disabled={busy || !options}>
              {busy ? t("login.working") : registering ? t("login.registerSubmit") : t("login.submit")}
            </button>
          </form>
        )}
        {!registering && options && options.sso.length > 0 && (
          <div class="sso">
            {options.password && <p class="or">{t("login.or")}</p>}
            {options.sso.map((p) => (
              <button type="button" key={p.id} onClick={() => (window.location.href = mx.ssoUrl(p.id, document.baseURI))}>
                {p.name ? t("login.sso", { name: p.name }) : t("login.ssoGeneric")}
              </button>
            ))}
          </div>
        )}
        {registration !== "closed" && (
          <p class="switch">
            <button
              type="button"
              class="link"
              onClick={() => {
                setRegistering(!registering);
                setFailure(undefined);
              }}
            >
              {registering ? t("login.haveAccount") : t("login.register")}
            </button>
          </p>
        )}
        {failure && (
          <p class="error" role="alert">
            {failure}
          </p>
        )}
        <Settings />
      </div>
    </main>
  );
}
