// The room list's order and counts, kept apart from matrix-js-sdk's types
// so that they can be tested alone.

export interface RoomSummary {
  roomId: string;
  name: string;
  membership: "join" | "invite";
  /** Timestamp (ms) of the room's latest activity. */
  lastActive: number;
  /** Notification counts from the server (unread messages, mentions). */
  unread: number;
  highlights: number;
  isDirect: boolean;
  encrypted: boolean;
  /** Who invited us (invites only). */
  inviter?: string;
}

export interface RoomList {
  invites: RoomSummary[];
  joined: RoomSummary[];
}

/** byActivity orders most recent first; ties by name, then by id, so the order is stable. */
export function byActivity(a: RoomSummary, b: RoomSummary): number {
  return b.lastActive - a.lastActive || a.name.localeCompare(b.name) || (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0);
}

/** sortRooms splits rooms into pending invites and joined rooms, each by activity. */
export function sortRooms(rooms: Iterable<RoomSummary>): RoomList {
  const invites: RoomSummary[] = [];
  const joined: RoomSummary[] = [];
  for (const r of rooms) (r.membership === "invite" ? invites : joined).push(r);
  invites.sort(byActivity);
  joined.sort(byActivity);
  return { invites, joined };
}

/** badge is the count shown beside a room: mentions count more than messages. */
export function badge(r: RoomSummary): { count: number; highlight: boolean } | null {
  if (r.highlights > 0) return { count: r.highlights, highlight: true };
  if (r.unread > 0) return { count: r.unread, highlight: false };
  return null;
}

/** totalUnread is the number of rooms with unread messages (for the tab title). */
export function totalUnread(list: RoomList): number {
  return list.joined.filter((r) => r.unread > 0).length + list.invites.length;
}
