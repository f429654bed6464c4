import { useEffect, useState } from "preact/hooks";
import type { MatrixClient } from "matrix-js-sdk";
import { lang, t } from "./i18n.ts";
import { useSignal } from "./hooks.ts";
import * as mx from "./matrix.ts";
import { Login } from "./login.tsx";
import { Chat } from "./chat.tsx";

type Phase =
  | { kind: "boot" }
  | { kind: "login"; error?: string }
  | { kind: "starting"; step: mx.StartPhase }
  | { kind: "ready"; client: MatrixClient }
  | { kind: "error"; error: string };

let markedInteractive = false;
/** interactive marks the moment the first usable screen is on show (time to interactive, docs/benchmarks.md). */
export function interactive(): void {
  if (markedInteractive) return;
  markedInteractive = true;
  performance.mark("luxchat-interactive");
  document.body.dataset.ready = "1";
}

export function App() {
  useSignal(lang);
  const [phase, setPhase] = useState<Phase>({ kind: "boot" });

  const begin = async (s: mx.Session, fresh: boolean) => {
    setPhase({ kind: "starting", step: "crypto" });
    try {
      const client = await mx.start(s, fresh, (step) => setPhase({ kind: "starting", step }));
      setPhase({ kind: "ready", client });
    } catch (e) {
      // A token the server no longer knows: log in again.
      if ((e as { errcode?: string }).errcode === "M_UNKNOWN_TOKEN") {
        await mx.logout(null);
        setPhase({ kind: "login" });
      } else setPhase({ kind: "error", error: String((e as Error).message ?? e) });
    }
  };

  useEffect(() => {
    // Back from single sign-on with a login token in the URL.
    const url = new URL(window.location.href);
    const token = url.searchParams.get("loginToken");
    if (token) {
      url.searchParams.delete("loginToken");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
      mx.tokenLogin(token).then(
        (s) => begin(s, true),
        (e) => setPhase({ kind: "login", error: String(e.message ?? e) }),
      );
      return;
    }
    const s = mx.loadSession();
    if (s) void begin(s, false);
    else setPhase({ kind: "login" });
  }, []);

  switch (phase.kind) {
    case "boot":
      return <Splash text={t("app.loading")} />;
    case "login":
      return <Login error={phase.error} onLogin={(s) => begin(s, true)} />;
    case "starting":
      return <Splash text={phase.step === "crypto" ? t("app.startingCrypto") : t("app.syncing")} />;
    case "error":
      return <Splash text={t("app.error", { error: phase.error })} />;
    case "ready":
      return (
        <Chat
          client={phase.client}
          onLogout={async () => {
            await mx.logout(phase.client);
            setPhase({ kind: "login" });
          }}
        />
      );
  }
}

function Splash({ text }: { text: string }) {
  return (
    <div class="splash" role="status" aria-live="polite">
      <Logo />
      <p>{text}</p>
    </div>
  );
}

export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 64 64" aria-hidden="true" width="48" height="48">
      <rect width="64" height="64" rx="14" fill="#1d4e89" />
      <path d="M16 20h32a4 4 0 0 1 4 4v14a4 4 0 0 1-4 4H30l-10 8v-8h-4a4 4 0 0 1-4-4V24a4 4 0 0 1 4-4z" fill="#fff" />
      <rect x="20" y="28" width="24" height="4" rx="2" fill="#ef3340" />
      <rect x="20" y="34" width="16" height="4" rx="2" fill="#00a3e0" />
    </svg>
  );
}
