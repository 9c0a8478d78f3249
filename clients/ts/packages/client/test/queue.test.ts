// The offline queue keeps order and never grows past its bound.
import { describe, expect, it } from "vitest";
import { BoundedQueue } from "../src/index.js";

describe("BoundedQueue", () => {
  it("is first in, first out", () => {
    const queue = new BoundedQueue<number>(10);
    [1, 2, 3].forEach((n) => queue.push(n));
    expect([queue.shift(), queue.shift(), queue.shift(), queue.shift()]).toEqual([1, 2, 3, undefined]);
  });

  it("drops the oldest when full, by default, and says which", () => {
    const queue = new BoundedQueue<number>(3);
    expect([1, 2, 3].map((n) => queue.push(n).dropped)).toEqual([undefined, undefined, undefined]);
    expect(queue.push(4).dropped).toBe(1);
    expect(queue.push(5).dropped).toBe(2);
    expect(queue.size).toBe(3);
    expect(queue.clear()).toEqual([3, 4, 5]);
    expect(queue.size).toBe(0);
  });

  it("can refuse the newest instead", () => {
    const queue = new BoundedQueue<number>(2, "drop-newest");
    queue.push(1);
    queue.push(2);
    expect(queue.push(3).dropped).toBe(3);
    expect(queue.clear()).toEqual([1, 2]);
  });

  it("with capacity 0 keeps nothing", () => {
    const queue = new BoundedQueue<string>(0);
    expect(queue.push("a").dropped).toBe("a");
    expect(queue.size).toBe(0);
  });

  it("rejects a negative capacity", () => {
    expect(() => new BoundedQueue(-1)).toThrow(RangeError);
  });
});
