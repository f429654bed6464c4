import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { MatrixClient } from "matrix-js-sdk";
import { t } from "./i18n.ts";
import * as mx from "./matrix.ts";

/** Dialog is a modal <dialog>: the browser traps focus and closes it on Escape. */
function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog ref={ref} aria-labelledby="dialog-title" onClose={onClose} onCancel={onClose}>
      <h2 id="dialog-title">{title}</h2>
      {children}
    </dialog>
  );
}

export function CreateRoomDialog({ client, onClose, onCreated }: { client: MatrixClient; onClose: () => void; onCreated: (roomId: string) => void }) {
  const [name, setName] = useState("");
  const [topic, setTopic] = useState("");
  const [isPublic, setPublic] = useState(false);
  const [encrypted, setEncrypted] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      onCreated(await mx.createRoom(client, { name: name.trim(), topic: topic.trim(), encrypted, public: isPublic }));
    } catch (err) {
      setError(t("create.failed", { error: String((err as Error).message ?? err) }));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t("create.title")} onClose={onClose}>
      <form onSubmit={submit} class="stack">
        <label>
          {t("create.name")}
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          {t("create.topic")}
          <input value={topic} onInput={(e) => setTopic(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={isPublic}
            onChange={(e) => {
              setPublic(e.currentTarget.checked);
              // Public rooms are readable by anyone who joins: encryption off by default.
              setEncrypted(!e.currentTarget.checked);
            }}
          />
          {t("create.public")}
        </label>
        <label class="check">
          <input type="checkbox" checked={encrypted} onChange={(e) => setEncrypted(e.currentTarget.checked)} />
          {t("create.encrypted")}
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            {t("dialog.cancel")}
          </button>
          <button type="submit" class="primary" disabled={busy || !name.trim()}>
            {t("create.submit")}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

export function StartDMDialog({ client, onClose, onStarted }: { client: MatrixClient; onClose: () => void; onStarted: (roomId: string) => void }) {
  const [term, setTerm] = useState("");
  const [results, setResults] = useState<{ user_id: string; display_name?: string }[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  useEffect(() => {
    const q = term.trim();
    if (!q) {
      setResults(null);
      return;
    }
    let live = true;
    const timer = setTimeout(() => {
      client.searchUserDirectory({ term: q, limit: 10 }).then(
        (r) => {
          if (!live) return;
          const found = r.results.filter((u) => u.user_id !== client.getSafeUserId());
          // A whole user ID the directory does not list (another server's user) can still be messaged.
          if (/^@[^:\s]+:\S+$/.test(q) && q !== client.getSafeUserId() && !found.some((u) => u.user_id === q)) found.push({ user_id: q });
          setResults(found);
        },
        (e) => live && setError(String(e.message ?? e)),
      );
    }, 250);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [term]);

  const start = async (userId: string) => {
    setBusy(true);
    try {
      onStarted(await mx.startDirect(client, userId));
    } catch (err) {
      setError(t("dm.failed", { error: String((err as Error).message ?? err) }));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t("dm.title")} onClose={onClose}>
      <div class="stack">
        <label>
          {t("dm.search")}
          <input type="search" value={term} onInput={(e) => setTerm(e.currentTarget.value)} autofocus />
        </label>
        {results && results.length === 0 && <p class="empty">{t("dm.noResults")}</p>}
        {results && results.length > 0 && (
          <ul class="people">
            {results.map((u) => (
              <li key={u.user_id}>
                <button type="button" disabled={busy} onClick={() => start(u.user_id)} aria-label={t("dm.start", { name: u.display_name || u.user_id })}>
                  <span class="person-name">{u.display_name || u.user_id}</span>
                  <small>{u.user_id}</small>
                </button>
              </li>
            ))}
          </ul>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            {t("dialog.cancel")}
          </button>
        </div>
      </div>
    </Dialog>
  );
}
