// Recovery bookkeeping: positions per room, the verdict on each event, the resubscribe frames.
import { describe, expect, it } from "vitest";
import { RecoveryBook } from "../src/index.js";

const ev = (room: string, offset: number, epoch = "e1") => ({ room, offset, epoch });

describe("RecoveryBook", () => {
  it("delivers events in sequence and remembers the last offset and epoch per room", () => {
    const book = new RecoveryBook();
    expect(book.accept(ev("branch:b1", 4))).toBe("deliver");
    expect(book.accept(ev("branch:b1", 5))).toBe("deliver");
    expect(book.accept(ev("order:1", 1, "e2"))).toBe("deliver");
    expect(book.position("branch:b1")).toEqual({ offset: 5, epoch: "e1" });
    expect(book.position("order:1")).toEqual({ offset: 1, epoch: "e2" });
  });

  it("drops an offset already delivered, without moving back", () => {
    const book = new RecoveryBook();
    book.accept(ev("r", 7));
    expect(book.accept(ev("r", 7))).toBe("duplicate");
    expect(book.accept(ev("r", 3))).toBe("duplicate");
    expect(book.position("r")).toEqual({ offset: 7, epoch: "e1" });
  });

  it("flags a gap and a new epoch, and moves to the event", () => {
    const book = new RecoveryBook();
    book.accept(ev("r", 1));
    expect(book.accept(ev("r", 3))).toBe("gap");
    expect(book.position("r")?.offset).toBe(3);
    // A new epoch restarts offsets: a smaller offset is not a duplicate there.
    expect(book.accept(ev("r", 1, "e9"))).toBe("reset");
    expect(book.position("r")).toEqual({ offset: 1, epoch: "e9" });
  });

  it("delivers events of rooms without history untouched", () => {
    const book = new RecoveryBook();
    expect(book.accept({})).toBe("deliver");
    expect(book.accept({ room: "x", offset: "1", epoch: "e" })).toBe("deliver");
    expect(book.tracked()).toEqual([]);
  });

  it("resubscribes every room it tracks or heard from, with a position where it has one", () => {
    const book = new RecoveryBook();
    book.track("order:9");
    book.track("order:10");
    book.accept(ev("order:10", 2));
    book.accept(ev("branch:b1", 12, "e3")); // joined by the server, learnt from its events
    expect(book.resubscribeFrames()).toEqual([
      { action: "subscribe", data: { room: "order:9" } },
      { action: "subscribe", data: { room: "order:10", offset: 2, epoch: "e1" } },
      { action: "subscribe", data: { room: "branch:b1", offset: 12, epoch: "e3" } },
    ]);
  });

  it("forgets a position after a failed recovery, and a room after untrack", () => {
    const book = new RecoveryBook();
    book.track("order:1");
    book.accept(ev("order:1", 5));
    book.forgetPosition("order:1");
    expect(book.resubscribeFrames()).toEqual([{ action: "subscribe", data: { room: "order:1" } }]);
    expect(book.accept(ev("order:1", 9))).toBe("deliver");
    book.untrack("order:1");
    expect(book.resubscribeFrames()).toEqual([]);
  });
});
