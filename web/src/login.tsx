import { useEffect, useState } from "preact/hooks";
import { t } from "./i18n.ts";
import * as mx from "./matrix.ts";
import { interactive, Logo } from "./app.tsx";
import { Settings } from "./settings.tsx";

export function Login({ error, onLogin }: { error?: string; onLogin: (s: mx.Session) => void }) {
  const [options, setOptions] = useState<mx.LoginOptions | null>(null);
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState(error);

  useEffect(() => {
    mx.loginOptions().then(setOptions, (e) => {
      setOptions({ password: true, sso: [] });
      setFailure(String(e.message ?? e));
    });
  }, []);
  useEffect(() => {
    if (options) interactive();
  }, [options]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setFailure(undefined);
    try {
      onLogin(await mx.passwordLogin(user.trim(), password));
    } catch (err) {
      setFailure(String((err as Error).message ?? err));
      setBusy(false);
    }
  };

  const server = window.location.host;
  return (
    <main class="login">
      <div class="login-card">
        <Logo />
        <h1>{t("login.title", { server })}</h1>
        {options?.password !== false && (
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
                autocomplete="current-password"
                required
                value={password}
                onInput={(e) => setPassword(e.currentTarget.value)}
              />
            </label>
            <button type="submit" class="primary" disabled={busy || !options}>
              {busy ? t("login.working") : t("login.submit")}
            </button>
          </form>
        )}
        {options && options.sso.length > 0 && (
          <div class="sso">
            {options.password && <p class="or">{t("login.or")}</p>}
            {options.sso.map((p) => (
              <button
                type="button"
                key={p.id}
                onClick={() => (window.location.href = mx.ssoUrl(p.id, document.baseURI))}
              >
                {p.name ? t("login.sso", { name: p.name }) : t("login.ssoGeneric")}
              </button>
            ))}
          </div>
        )}
        {failure && (
          <p class="error" role="alert">
            {t("login.failed", { error: failure })}
          </p>
        )}
        <Settings />
      </div>
    </main>
  );
}
