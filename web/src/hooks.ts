import { useEffect, useState } from "preact/hooks";
import { ClientEvent, MatrixEventEvent, RoomEvent, RoomStateEvent, type MatrixClient } from "matrix-js-sdk";
import type { Signal } from "./signal.ts";

/** useSignal re-renders the component when s changes. */
export function useSignal<T>(s: Signal<T>): T {
  const [v, setV] = useState(s.get());
  useEffect(() => s.subscribe(setV), [s]);
  return v;
}

/**
 * useClientTick re-renders the component (at most once a frame) when
 * anything the room list or a timeline shows may have changed.
 */
export function useClientTick(client: MatrixClient): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let queued = false;
    const bump = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        setTick((n) => n + 1);
      });
    };
    const events = [
      ClientEvent.Room,
      ClientEvent.DeleteRoom,
      ClientEvent.AccountData,
      RoomEvent.Timeline,
      RoomEvent.TimelineReset,
      RoomEvent.LocalEchoUpdated,
      RoomEvent.Name,
      RoomEvent.MyMembership,
      RoomEvent.Receipt,
      RoomEvent.UnreadNotifications,
      RoomStateEvent.Events,
      MatrixEventEvent.Decrypted,
    ] as const;
    for (const e of events) client.on(e as never, bump as never);
    return () => {
      for (const e of events) client.off(e as never, bump as never);
    };
  }, [client]);
  return tick;
}
