// Recovery bookkeeping for rooms with history (PROTOCOLS.md §2): the last offset and epoch seen
// per room, the subscribe frames that ask for what was missed, and the verdict on each event
// (new, already seen, after a gap). Pure: no socket, no timers, so every rule is unit-tested.

/** Where a client stands in one room's history. */
export interface RoomPosition {
  offset: number;
  epoch: string;
}

/** What to do with an event, by its `room`/`offset`/`epoch`. */
export type Verdict =
  /** Deliver it: the next one, or an event of a room without history. */
  | "deliver"
  /** Drop it: its offset was already delivered (a recovery overlapping live delivery). */
  | "duplicate"
  /** Deliver it, but events before it were never received: the app should reload that room. */
  | "gap"
  /** Deliver it; the room's history was lost (a new epoch): the app should reload that room. */
  | "reset";

export interface HistoryEvent {
  room?: unknown;
  offset?: unknown;
  epoch?: unknown;
}

export class RecoveryBook {
  private positions = new Map<string, RoomPosition>();
  private rooms = new Set<string>();

  /** Remembers `room` as one the client wants, so it is resubscribed after a reconnect even
   * before it carried an event. */
  track(room: string): void {
    this.rooms.add(room);
  }

  /** Forgets `room` and where the client stood in it. */
  untrack(room: string): void {
    this.rooms.delete(room);
    this.positions.delete(room);
  }

  position(room: string): RoomPosition | undefined {
    return this.positions.get(room);
  }

  /** Every room to resubscribe to: the ones asked for and the ones events came from (rooms the
   * server joins automatically are learnt this way). */
  tracked(): string[] {
    return [...new Set([...this.rooms, ...this.positions.keys()])];
  }

  /** Judges an incoming event and, unless it is a duplicate, moves the room's position to it. */
  accept(event: HistoryEvent): Verdict {
    const { room, offset, epoch } = event;
    if (typeof room !== "string" || typeof offset !== "number" || typeof epoch !== "string") {
      return "deliver";
    }
    const known = this.positions.get(room);
    if (known && known.epoch === epoch && offset <= known.offset) return "duplicate";
    this.positions.set(room, { offset, epoch });
    if (!known) return "deliver";
    if (known.epoch !== epoch) return "reset";
    return offset === known.offset + 1 ? "deliver" : "gap";
  }

  /** The frames that resubscribe every tracked room, with its position where one is known. */
  resubscribeFrames(): Array<{ action: "subscribe"; data: { room: string } & Partial<RoomPosition> }> {
    return this.tracked().map((room) => {
      const position = this.positions.get(room);
      return { action: "subscribe", data: position ? { room, ...position } : { room } };
    });
  }

  /** After `recovered:false` the client's position means nothing any more: it restarts from the
   * next event it sees. */
  forgetPosition(room: string): void {
    this.positions.delete(room);
  }
}
