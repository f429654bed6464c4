import { useEffect, useMemo, useState } from "preact/hooks";
import type { MatrixClient } from "matrix-js-sdk";
import { t } from "./i18n.ts";
import { useClientTick } from "./hooks.ts";
import * as mx from "./matrix.ts";
import { badge, sortRooms, totalUnread, type RoomSummary } from "./rooms.ts";
import { interactive } from "./app.tsx";
import { Settings } from "./settings.tsx";
import { Timeline } from "./timeline.tsx";
import { CreateRoomDialog, StartDMDialog } from "./dialogs.tsx";

/** The client's routes live under the base path: "" (the room list) and "room/<room id>". */
function basePath(): string {
  return new URL(document.baseURI).pathname;
}
function routeRoom(): string | null {
  const rest = window.location.pathname.slice(basePath().length);
  return rest.startsWith("room/") ? decodeURIComponent(rest.slice(5)) : null;
}

export function Chat({ client, onLogout }: { client: MatrixClient; onLogout: () => void }) {
  const tick = useClientTick(client);
  const [roomId, setRoomId] = useState<string | null>(routeRoom());
  const [dialog, setDialog] = useState<"room" | "dm" | null>(null);

  useEffect(() => {
    interactive();
    const onPop = () => setRoomId(routeRoom());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const open = (id: string | null) => {
    history.pushState(null, "", basePath() + (id ? "room/" + encodeURIComponent(id) : ""));
    setRoomId(id);
  };

  const list = useMemo(() => {
    const direct = mx.directRoomIds(client);
    const all: RoomSummary[] = [];
    for (const r of client.getRooms()) {
      const s = mx.summarise(client, r, direct);
      if (s) all.push(s);
    }
    return sortRooms(all);
  }, [client, tick]);

  const unread = totalUnread(list);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) luxchat` : "luxchat";
  }, [unread]);

  const room = roomId ? client.getRoom(roomId) : null;
  const joined = room?.getMyMembership() === "join";

  return (
    <div class={"chat" + (joined ? " has-room" : "")}>
      <nav class="sidebar" aria-label={t("rooms.title")}>
        <header class="me">
          <span class="me-id" title={client.getSafeUserId()}>
            {client.getUser(client.getSafeUserId())?.displayName || client.getSafeUserId()}
          </span>
        </header>
        <div class="actions">
          <button type="button" onClick={() => setDialog("dm")}>
            {t("rooms.newDM")}
          </button>
          <button type="button" onClick={() => setDialog("room")}>
            {t("rooms.newRoom")}
          </button>
        </div>
        {list.invites.length > 0 && (
          <section aria-labelledby="invites-h">
            <h2 id="invites-h">{t("rooms.invites")}</h2>
            <ul class="rooms">
              {list.invites.map((r) => (
                <Invite key={r.roomId} client={client} room={r} onJoined={() => open(r.roomId)} />
              ))}
            </ul>
          </section>
        )}
        <section aria-labelledby="rooms-h">
          <h2 id="rooms-h">{t("rooms.title")}</h2>
          {list.joined.length === 0 && <p class="empty">{t("rooms.empty")}</p>}
          <ul class="rooms">
            {list.joined.map((r) => (
              <RoomItem key={r.roomId} room={r} current={r.roomId === roomId} onOpen={() => open(r.roomId)} />
            ))}
          </ul>
        </section>
        <details class="menu">
          <summary>{t("menu.settings")}</summary>
          <Settings onLogout={onLogout} />
        </details>
      </nav>
      <main class="room-pane">
        {room && joined ? (
          <Timeline key={room.roomId} client={client} room={room} tick={tick} onBack={() => open(null)} />
        ) : (
          <p class="pick">{t("room.pick")}</p>
        )}
      </main>
      {dialog === "room" && <CreateRoomDialog client={client} onClose={() => setDialog(null)} onCreated={(id) => (setDialog(null), open(id))} />}
      {dialog === "dm" && <StartDMDialog client={client} onClose={() => setDialog(null)} onStarted={(id) => (setDialog(null), open(id))} />}
    </div>
  );
}

function RoomItem({ room, current, onOpen }: { room: RoomSummary; current: boolean; onOpen: () => void }) {
  const b = badge(room);
  return (
    <li>
      <button type="button" class={"room-item" + (b ? " unread" : "")} aria-current={current ? "page" : undefined} onClick={onOpen} data-room-id={room.roomId}>
        <span class="avatar" aria-hidden="true">
          {initial(room.name)}
        </span>
        <span class="room-name">{room.name}</span>
        {room.encrypted && (
          <Lock label={t("rooms.encrypted")} />
        )}
        {b && (
          <span class={"badge" + (b.highlight ? " highlight" : "")} aria-label={t(b.highlight ? "rooms.mentions" : "rooms.unread", { count: b.count })}>
            {b.count}
          </span>
        )}
      </button>
    </li>
  );
}

function Invite({ client, room, onJoined }: { client: MatrixClient; room: RoomSummary; onJoined: () => void }) {
  const [busy, setBusy] = useState(false);
  const inviter = room.inviter ? (client.getUser(room.inviter)?.displayName ?? room.inviter) : "";
  const act = async (accept: boolean) => {
    setBusy(true);
    try {
      if (accept) {
        await mx.acceptInvite(client, room.roomId);
        onJoined();
      } else await mx.declineInvite(client, room.roomId);
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="invite" data-room-id={room.roomId}>
      <span class="avatar" aria-hidden="true">
        {initial(room.name)}
      </span>
      <span class="invite-text">
        <span class="room-name">{room.name}</span>
        {inviter && <small>{t("rooms.invitedBy", { name: inviter })}</small>}
      </span>
      <span class="invite-actions">
        <button type="button" class="primary" disabled={busy} onClick={() => act(true)} aria-label={`${t("rooms.accept")}: ${room.name}`}>
          {t("rooms.accept")}
        </button>
        <button type="button" disabled={busy} onClick={() => act(false)} aria-label={`${t("rooms.decline")}: ${room.name}`}>
          {t("rooms.decline")}
        </button>
      </span>
    </li>
  );
}

/** Lock is the padlock shown on encrypted rooms and messages (an SVG: no emoji font needed). */
export function Lock({ label }: { label?: string }) {
  return (
    <svg class="lock" viewBox="0 0 16 16" width="12" height="12" role={label ? "img" : undefined} aria-label={label} aria-hidden={label ? undefined : "true"}>
      {label && <title>{label}</title>}
      <path d="M4 7V5a4 4 0 0 1 8 0v2h1v8H3V7zm2 0h4V5a2 2 0 0 0-4 0z" fill="currentColor" />
    </svg>
  );
}

export function initial(name: string): string {
  const c = name.replace(/^[#@!]/, "").trim();
  return c ? String.fromCodePoint(c.codePointAt(0)!).toUpperCase() : "?";
}
