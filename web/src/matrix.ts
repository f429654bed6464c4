// The session: logging in (password, single sign-on), keeping the access
// token, starting matrix-js-sdk with its Rust crypto, and the few room
// operations the UI needs. The homeserver is always the origin the client
// is served from: the Content-Security-Policy allows no other.
import {
  ClientEvent,
  createClient,
  EventType,
  NotificationCountType,
  Preset,
  SyncState,
  Visibility,
  KnownMembership,
  type MatrixClient,
  type Room,
} from "matrix-js-sdk";
import type { RoomSummary } from "./rooms.ts";

export interface Session {
  userId: string;
  deviceId: string;
  accessToken: string;
}

export interface LoginOptions {
  password: boolean;
  /** Identity providers of m.login.sso; one with id "" when the server names none. */
  sso: { id: string; name: string }[];
}

const SESSION_KEY = "luxchat.session";

export const baseUrl = (): string => window.location.origin;

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
    return s && s.userId && s.deviceId && s.accessToken ? s : null;
  } catch {
    return null;
  }
}

function saveSession(s: Session): void {
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

/** loginOptions asks the server (GET /login) how one may log in. */
export async function loginOptions(): Promise<LoginOptions> {
  const flows = (await createClient({ baseUrl: baseUrl() }).loginFlows()).flows;
  const out: LoginOptions = { password: false, sso: [] };
  for (const f of flows) {
    if (f.type === "m.login.password") out.password = true;
    if (f.type === "m.login.sso") {
      const idps = (f as { identity_providers?: { id: string; name: string }[] }).identity_providers ?? [];
      out.sso.push(...(idps.length ? idps.map((p) => ({ id: p.id, name: p.name || p.id })) : [{ id: "", name: "" }]));
    }
  }
  return out;
}

async function login(body: Record<string, unknown>): Promise<Session> {
  const res = await createClient({ baseUrl: baseUrl() }).loginRequest({
    ...body,
    initial_device_display_name: `luxchat web (${navigator.platform || "browser"})`,
  } as never);
  const s = { userId: res.user_id, deviceId: res.device_id, accessToken: res.access_token };
  saveSession(s);
  return s;
}

export function passwordLogin(user: string, password: string): Promise<Session> {
  return login({ type: "m.login.password", identifier: { type: "m.id.user", user }, password });
}

export function tokenLogin(token: string): Promise<Session> {
  return login({ type: "m.login.token", token });
}

/** How new accounts are made here: not at all, freely, or with a registration token. */
export type Registration = "closed" | "open" | "token";

const DUMMY = "m.login.dummy";
const TOKEN = "m.login.registration_token";
type UIAError = { httpStatus?: number; data?: { flows?: { stages: string[] }[]; completed?: string[]; session?: string } };

/** registrationMode asks the server (POST /register, no auth) which user-interactive steps registration takes. */
export async function registrationMode(): Promise<Registration> {
  try {
    await createClient({ baseUrl: baseUrl() }).registerRequest({} as never);
    return "open";
  } catch (e) {
    return (e as UIAError).httpStatus === 401 ? registrationFromFlows((e as UIAError).data?.flows) : "closed";
  }
}

/** registrationFromFlows reads a 401's flows: the easiest one this client can complete decides. */
export function registrationFromFlows(flows: { stages: string[] }[] | undefined): Registration {
  if (!Array.isArray(flows)) return "closed";
  if (flows.some((f) => f.stages.length > 0 && f.stages.every((s) => s === DUMMY))) return "open";
  if (flows.some((f) => f.stages.includes(TOKEN) && f.stages.every((s) => s === DUMMY || s === TOKEN))) return "token";
  return "closed";
}

/** register creates an account, going through the dummy and registration-token stages, and logs in. */
export async function register(user: string, password: string, token?: string): Promise<Session> {
  const client = createClient({ baseUrl: baseUrl() });
  const body = { username: user, password, initial_device_display_name: `luxchat web (${navigator.platform || "browser"})` };
  let auth: Record<string, string> | undefined;
  for (let round = 0; round < 4; round++) {
    try {
      const res = await client.registerRequest({ ...body, auth } as never);
      if (!res.access_token || !res.device_id) throw new Error("the server made the account but logged no one in");
      const s = { userId: res.user_id, deviceId: res.device_id, accessToken: res.access_token };
      saveSession(s);
      return s;
    } catch (e) {
      const data = (e as UIAError).data;
      if ((e as UIAError).httpStatus !== 401 || !data?.flows || !data.session) throw e;
      const done = data.completed ?? [];
      const flow = data.flows.find((f) => f.stages.every((s) => s === DUMMY || (s === TOKEN && token)));
      const next = flow?.stages.find((s) => !done.includes(s));
      if (!next) throw e;
      auth = next === TOKEN ? { type: TOKEN, token: token!, session: data.session } : { type: DUMMY, session: data.session };
    }
  }
  throw new Error("registration did not finish");
}

/** ssoUrl is where the browser goes to log in with an identity provider; it comes back to redirectUrl with ?loginToken=. */
export function ssoUrl(idpId: string, redirectUrl: string): string {
  return createClient({ baseUrl: baseUrl() }).getSsoLoginUrl(redirectUrl, "sso", idpId || undefined);
}

export type StartPhase = "crypto" | "sync";

/**
 * start builds the client for a session, loads the Rust crypto (the
 * WebAssembly loads here, not with the page) over IndexedDB, and syncs.
 * fresh: a new login, whose device's crypto store must start empty.
 */
export async function start(s: Session, fresh: boolean, phase: (p: StartPhase) => void): Promise<MatrixClient> {
  const client = createClient({ baseUrl: baseUrl(), userId: s.userId, deviceId: s.deviceId, accessToken: s.accessToken });
  phase("crypto");
  if (fresh) await client.clearStores();
  await client.initRustCrypto();
  phase("sync");
  const ready = new Promise<void>((resolve, reject) => {
    const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }) => {
      if (state === SyncState.Prepared || state === SyncState.Syncing) {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error && data?.error && (data.error as { errcode?: string }).errcode === "M_UNKNOWN_TOKEN") {
        client.off(ClientEvent.Sync, onSync);
        reject(data.error);
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  await client.startClient({ initialSyncLimit: 30, lazyLoadMembers: true });
  await ready;
  return client;
}

/** logout ends the session on the server and forgets it here, crypto store included. */
export async function logout(client: MatrixClient | null): Promise<void> {
  try {
    if (client) await client.logout(true);
  } catch {
    // the token may already be gone; forget it here anyway
  }
  localStorage.removeItem(SESSION_KEY);
  try {
    client?.stopClient();
    await client?.clearStores();
  } catch {
    // nothing more to do
  }
}

/** directRoomIds reads m.direct: the rooms the user marked as direct chats. */
export function directRoomIds(client: MatrixClient): Map<string, string> {
  const out = new Map<string, string>();
  const content = (client.getAccountData(EventType.Direct)?.getContent() ?? {}) as Record<string, string[]>;
  for (const [user, rooms] of Object.entries(content)) for (const r of rooms ?? []) out.set(r, user);
  return out;
}

/** summarise turns a room into what the room list shows. */
export function summarise(client: MatrixClient, room: Room, direct: Map<string, string>): RoomSummary | null {
  const membership = room.getMyMembership();
  if (membership !== KnownMembership.Join && membership !== KnownMembership.Invite) return null;
  const me = room.getMember(client.getSafeUserId());
  const invite = membership === KnownMembership.Invite;
  return {
    roomId: room.roomId,
    name: room.name || room.roomId,
    membership,
    lastActive: invite ? (me?.events.member?.getTs() ?? 0) : room.getLastActiveTimestamp(),
    unread: room.getUnreadNotificationCount(NotificationCountType.Total),
    highlights: room.getUnreadNotificationCount(NotificationCountType.Highlight),
    isDirect: direct.has(room.roomId) || (invite && !!me?.events.member?.getContent().is_direct),
    encrypted: room.hasEncryptionStateEvent(),
    inviter: invite ? (me?.events.member?.getSender() ?? undefined) : undefined,
  };
}

const encryptionState = (encrypted: boolean) =>
  encrypted ? [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] : [];

/** createRoom makes a room: private and encrypted unless asked otherwise. */
export async function createRoom(client: MatrixClient, o: { name: string; topic?: string; encrypted: boolean; public: boolean }): Promise<string> {
  const { room_id } = await client.createRoom({
    name: o.name,
    topic: o.topic || undefined,
    preset: o.public ? Preset.PublicChat : Preset.PrivateChat,
    visibility: o.public ? Visibility.Public : Visibility.Private,
    initial_state: encryptionState(o.encrypted),
  });
  return room_id;
}

async function markDirect(client: MatrixClient, userId: string, roomId: string): Promise<void> {
  const content = { ...((client.getAccountData(EventType.Direct)?.getContent() ?? {}) as Record<string, string[]>) };
  const rooms = content[userId] ?? [];
  if (rooms.includes(roomId)) return;
  content[userId] = [...rooms, roomId];
  await client.setAccountData(EventType.Direct, content);
}

/** startDirect opens the existing direct chat with userId, or creates an encrypted one and invites them. */
export async function startDirect(client: MatrixClient, userId: string): Promise<string> {
  for (const [roomId, user] of directRoomIds(client)) {
    const room = client.getRoom(roomId);
    if (user === userId && room && room.getMyMembership() === KnownMembership.Join) return roomId;
  }
  const { room_id } = await client.createRoom({
    preset: Preset.TrustedPrivateChat,
    is_direct: true,
    invite: [userId],
    initial_state: encryptionState(true),
  });
  await markDirect(client, userId, room_id);
  return room_id;
}

/** acceptInvite joins; a direct chat's invite also goes into m.direct. */
export async function acceptInvite(client: MatrixClient, roomId: string): Promise<void> {
  const room = client.getRoom(roomId);
  const member = room?.getMember(client.getSafeUserId())?.events.member;
  await client.joinRoom(roomId);
  if (member?.getContent().is_direct && member.getSender()) await markDirect(client, member.getSender()!, roomId);
}

export async function declineInvite(client: MatrixClient, roomId: string): Promise<void> {
  await client.leave(roomId);
}
