import { describe, expect, it } from "vitest";
import { badge, sortRooms, totalUnread, type RoomSummary } from "./rooms.ts";

const room = (o: Partial<RoomSummary> & { roomId: string }): RoomSummary => ({
  name: o.roomId,
  membership: "join",
  lastActive: 0,
  unread: 0,
  highlights: 0,
  isDirect: false,
  encrypted: true,
  ...o,
});

describe("sortRooms", () => {
  it("puts invites apart and orders each group by latest activity", () => {
    const l = sortRooms([
      room({ roomId: "!old", lastActive: 100 }),
      room({ roomId: "!inv1", membership: "invite", lastActive: 50 }),
      room({ roomId: "!new", lastActive: 300 }),
      room({ roomId: "!mid", lastActive: 200 }),
      room({ roomId: "!inv2", membership: "invite", lastActive: 60 }),
    ]);
    expect(l.joined.map((r) => r.roomId)).toEqual(["!new", "!mid", "!old"]);
    expect(l.invites.map((r) => r.roomId)).toEqual(["!inv2", "!inv1"]);
  });
  it("breaks ties by name then id, so the order is stable", () => {
    const l = sortRooms([
      room({ roomId: "!b", name: "Zeta" }),
      room({ roomId: "!c", name: "Alpha" }),
      room({ roomId: "!a", name: "Alpha" }),
    ]);
    expect(l.joined.map((r) => r.roomId)).toEqual(["!a", "!c", "!b"]);
  });
});

describe("badge and totalUnread", () => {
  it("shows mentions before plain unread counts", () => {
    expect(badge(room({ roomId: "!x" }))).toBeNull();
    expect(badge(room({ roomId: "!x", unread: 4 }))).toEqual({ count: 4, highlight: false });
    expect(badge(room({ roomId: "!x", unread: 4, highlights: 1 }))).toEqual({ count: 1, highlight: true });
  });
  it("counts rooms with unread messages and pending invites", () => {
    const l = sortRooms([
      room({ roomId: "!a", unread: 2 }),
      room({ roomId: "!b" }),
      room({ roomId: "!c", unread: 1, highlights: 1 }),
      room({ roomId: "!i", membership: "invite" }),
    ]);
    expect(totalUnread(l)).toBe(3);
  });
});
