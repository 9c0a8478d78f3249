// @vitest-environment happy-dom
// The kiosk's typed useWebSocket over a fake socket.io socket: the seed's behaviour, typed.
import { act, renderHook } from "@testing-library/react";
import type { Socket } from "socket.io-client";
import { describe, expect, it, vi } from "vitest";
import { KIOSK_IO_DEFAULTS, useWebSocket } from "../src/kiosk.js";

/** Just enough of a socket.io client socket: the test fires its events. */
function fakeIo() {
  const made: Array<{ url: string; options: object; socket: FakeIoSocket }> = [];
  class FakeIoSocket {
    connected = false;
    emitted: Array<[string, unknown]> = [];
    disconnected = false;
    private handlers = new Map<string, () => void>();
    private any: ((name: string, payload: unknown) => void) | undefined;
    on(name: string, handler: () => void) {
      this.handlers.set(name, handler);
      return this;
    }
    onAny(handler: (name: string, payload: unknown) => void) {
      this.any = handler;
      return this;
    }
    emit(name: string, payload: unknown) {
      this.emitted.push([name, payload]);
      return this;
    }
    disconnect() {
      this.disconnected = true;
      return this;
    }
    // The server side:
    fire(name: "connect" | "disconnect") {
      this.connected = name === "connect";
      this.handlers.get(name)?.();
    }
    deliver(name: string, data: unknown) {
      this.any?.(name, { type: name, timestamp: "2026-12-04T19:30:00.000Z", data });
    }
  }
  const io = (url: string, options: object) => {
    const socket = new FakeIoSocket();
    made.push({ url, options, socket });
    return socket as unknown as Socket;
  };
  return { io, made, last: () => made[made.length - 1]!.socket };
}

describe("kiosk useWebSocket", () => {
  it("connects with reconnection that never gives up, and reports the connection", () => {
    const fake = fakeIo();
    const { result } = renderHook(() => useWebSocket({ url: "http://kiosk", io: fake.io }));
    expect(fake.made[0]).toMatchObject({ url: "http://kiosk", options: KIOSK_IO_DEFAULTS });
    expect(result.current.connected).toBe(false);
    act(() => fake.last().fire("connect"));
    expect(result.current.connected).toBe(true);
    act(() => fake.last().fire("disconnect"));
    expect(result.current.connected).toBe(false);
  });

  it("sends the seed's envelope, and nothing while disconnected", () => {
    const fake = fakeIo();
    const { result } = renderHook(() => useWebSocket({ url: "http://kiosk", io: fake.io }));
    expect(result.current.sendMessage("get_status", {})).toBe(false);
    act(() => fake.last().fire("connect"));
    expect(result.current.sendMessage("register_tag_start", { entry_id: "e1", timeout: 30 })).toBe(true);
    const [[name, payload]] = fake.last().emitted as [[string, { timestamp: string; data: unknown }]];
    expect(name).toBe("register_tag_start");
    expect(payload.data).toEqual({ entry_id: "e1", timeout: 30 });
    expect(new Date(payload.timestamp).toISOString()).toBe(payload.timestamp);
  });

  it("hands each message to its handler and as lastMessage, as {type, timestamp, data}", () => {
    const fake = fakeIo();
    const { result, unmount } = renderHook(() => useWebSocket({ url: "http://kiosk", io: fake.io }));
    const progress = vi.fn();
    const off = result.current.registerHandler("tag_write_progress", (message) => progress(message.data.progress));
    act(() => fake.last().deliver("tag_write_progress", { entry_id: "e1", progress: 40 }));
    act(() => fake.last().deliver("tag_registered", { entry_id: "e1", tag_uid: "04:11" }));
    expect(progress).toHaveBeenCalledWith(40);
    expect(result.current.lastMessage).toEqual({
      type: "tag_registered",
      timestamp: "2026-12-04T19:30:00.000Z",
      data: { entry_id: "e1", tag_uid: "04:11" },
    });
    off();
    act(() => fake.last().deliver("tag_write_progress", { entry_id: "e1", progress: 80 }));
    expect(progress).toHaveBeenCalledTimes(1);
    unmount();
    expect(fake.last().disconnected).toBe(true);
  });
});
