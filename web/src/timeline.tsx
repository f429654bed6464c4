import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { EventStatus, EventTimeline, EventType, MsgType, type MatrixClient, type MatrixEvent, type Room } from "matrix-js-sdk";
import { t } from "./i18n.ts";
import { renderMarkdown, sanitiseHtml } from "./markdown.ts";
import { initial, Lock } from "./chat.tsx";

export function Timeline({ client, room, tick, onBack }: { client: MatrixClient; room: Room; tick: number; onBack: () => void }) {
  const me = client.getSafeUserId();
  const timeline = room.getLiveTimeline();
  const events = timeline.getEvents();
  const list = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const [loading, setLoading] = useState(false);
  const [canBack, setCanBack] = useState(() => timeline.getPaginationToken(EventTimeline.BACKWARDS) !== null);
  const startReached = events.some((e) => e.getType() === EventType.RoomCreate);

  // Stay at the newest message while the user has not scrolled up.
  useLayoutEffect(() => {
    const el = list.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [tick, events.length]);

  // Tell the server what we have read (the unread counts follow).
  useEffect(() => {
    if (document.visibilityState !== "visible") return;
    for (let i = events.length - 1; i >= 0; i--) {
      const ev = events[i];
      if (ev.status !== null || !ev.getId()?.startsWith("$")) continue;
      if (ev.getSender() !== me && !room.hasUserReadEvent(me, ev.getId()!)) client.sendReadReceipt(ev).catch(() => {});
      break;
    }
  }, [tick, room]);

  const loadMore = async () => {
    const el = list.current;
    if (loading || !canBack || startReached || !el) return;
    setLoading(true);
    const fromBottom = el.scrollHeight - el.scrollTop;
    try {
      setCanBack(await client.paginateEventTimeline(room.getLiveTimeline(), { backwards: true, limit: 30 }));
    } finally {
      setLoading(false);
      requestAnimationFrame(() => {
        el.scrollTop = el.scrollHeight - fromBottom;
      });
    }
  };

  const onScroll = () => {
    const el = list.current!;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 80) void loadMore();
  };

  const encrypted = room.hasEncryptionStateEvent();
  return (
    <section class="room" aria-labelledby="room-title">
      <header class="room-header">
        <button type="button" class="back" onClick={onBack} aria-label={t("room.back")}>
          ←
        </button>
        <span class="avatar" aria-hidden="true">
          {initial(room.name)}
        </span>
        <div>
          <h2 id="room-title">{room.name}</h2>
          <small class={encrypted ? "e2ee on" : "e2ee"}>
            {encrypted && <Lock />} {encrypted ? t("room.isEncrypted") : t("room.notEncrypted")}
          </small>
        </div>
      </header>
      <div class="timeline" ref={list} onScroll={onScroll} role="log" aria-live="polite" aria-label={t("room.timeline", { room: room.name })}>
        {startReached || !canBack ? (
          <p class="timeline-start">{t("room.start")}</p>
        ) : (
          <button type="button" class="load-more" onClick={loadMore} disabled={loading}>
            {loading ? t("app.loading") : t("room.loadMore")}
          </button>
        )}
        <ol class="events">
          {events.map((ev) => (
            <EventTile key={ev.getId() ?? ev.getTxnId()} ev={ev} room={room} me={me} />
          ))}
        </ol>
      </div>
      <Composer client={client} room={room} onSent={() => (atBottom.current = true)} />
    </section>
  );
}

function senderName(room: Room, userId: string | undefined): string {
  if (!userId) return "";
  return room.getMember(userId)?.name ?? userId;
}

function EventTile({ ev, room, me }: { ev: MatrixEvent; room: Room; me: string }) {
  const type = ev.getType();
  const name = senderName(room, ev.getSender());
  const c = ev.getContent();
  const notice = (text: string) => <li class="notice">{text}</li>;
  switch (type) {
    case EventType.RoomMember: {
      const prev = ev.getPrevContent().membership;
      const target = senderName(room, ev.getStateKey());
      if (c.membership === prev) return null; // a profile change
      if (c.membership === "join") return notice(t("event.join", { name: target }));
      if (c.membership === "leave") return notice(t("event.leave", { name: target }));
      if (c.membership === "invite") return notice(t("event.invite", { name, target }));
      return null;
    }
    case EventType.RoomCreate:
      return notice(t("event.create", { name }));
    case EventType.RoomEncryption:
      return notice(t("event.encryption", { name }));
    case EventType.RoomName:
      return c.name ? notice(t("event.name", { name, value: c.name })) : null;
    case EventType.RoomMessageEncrypted:
    case EventType.RoomMessage:
      break;
    default:
      return null;
  }
  if (ev.isRedacted()) return null;
  const mine = ev.getSender() === me;
  const time = new Date(ev.getTs()).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  let body;
  if (ev.isDecryptionFailure()) body = <p class="body failed">{t("room.undecryptable")}</p>;
  else if (type === EventType.RoomMessageEncrypted) body = <p class="body pending">{t("room.decrypting")}</p>;
  else if (c.format === "org.matrix.custom.html" && typeof c.formatted_body === "string")
    body = <div class="body html" dangerouslySetInnerHTML={{ __html: sanitiseHtml(c.formatted_body) }} />;
  else body = <p class="body">{typeof c.body === "string" ? c.body : ""}</p>;
  const status = ev.status === EventStatus.NOT_SENT ? t("room.sendFailed") : ev.status ? t("room.sending") : null;
  return (
    <li class={"msg" + (mine ? " mine" : "") + (c.msgtype === MsgType.Emote ? " emote" : "")} data-event-id={ev.getId() ?? undefined}>
      <div class="meta">
        <span class="sender">{name}</span> <time dateTime={new Date(ev.getTs()).toISOString()}>{time}</time>
        {ev.isEncrypted() && <Lock label={t("rooms.encrypted")} />}
        {status && <span class="status">{status}</span>}
      </div>
      {body}
    </li>
  );
}

function Composer({ client, room, onSent }: { client: MatrixClient; room: Room; onSent: () => void }) {
  const [text, setText] = useState("");
  const send = () => {
    const body = text.trim();
    if (!body) return;
    setText("");
    onSent();
    const emote = body.startsWith("/me ");
    const plain = emote ? body.slice(4) : body;
    const html = renderMarkdown(plain);
    const content = {
      msgtype: emote ? MsgType.Emote : MsgType.Text,
      body: plain,
      ...(html ? { format: "org.matrix.custom.html", formatted_body: html } : {}),
    };
    // A failure shows on the local echo ("Not sent").
    client.sendMessage(room.roomId, content as never).catch(() => {});
  };
  const label = t("room.composer", { room: room.name });
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <textarea
        rows={1}
        aria-label={label}
        placeholder={label}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      <button type="submit" class="primary" disabled={!text.trim()}>
        {t("room.send")}
      </button>
    </form>
  );
}
