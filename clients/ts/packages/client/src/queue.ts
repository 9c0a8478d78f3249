// The offline send queue: frames sent while the socket is down wait here, bounded so that a
// page left offline for hours does not grow without limit.

/** What a full queue does with one more frame. */
export type OverflowPolicy = "drop-oldest" | "drop-newest";

/** A FIFO with a size bound; `push` reports the frame it had to drop, if any. */
export class BoundedQueue<T> {
  private items: T[] = [];

  constructor(
    readonly capacity: number,
    readonly overflow: OverflowPolicy = "drop-oldest",
  ) {
    if (!(capacity >= 0)) throw new RangeError(`queue capacity must be >= 0, got ${capacity}`);
  }

  get size(): number {
    return this.items.length;
  }

  /** Adds `item`; returns the item dropped to respect the bound (possibly `item` itself). */
  push(item: T): { dropped?: T } {
    if (this.items.length < this.capacity) {
      this.items.push(item);
      return {};
    }
    if (this.overflow === "drop-newest" || this.capacity === 0) return { dropped: item };
    const dropped = this.items.shift() as T;
    this.items.push(item);
    return { dropped };
  }

  /** The oldest item, without removing it. */
  peek(): T | undefined {
    return this.items[0];
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  clear(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
