// @vitest-environment happy-dom
// The hooks over a scripted WebSocket: what a component sees, and what lands in the query cache.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, renderHook } from "@testing-library/react";
import { createElement, type ReactNode } from "react";
import { describe, expect, it, vi } from "vitest";
import { fakeWebSockets } from "../../client/test/fake-websocket.js";
import {
  counterQueryKeys,
  useCounterWebSocket,
  useDeviceDashboard,
  useDisplaySession,
  useRooms,
} from "../src/index.js";

const metadata = { id: 1, name: "c", value: 5, createdAt: "t", updatedAt: "t", operationCount: 5 };
const noJitter = { random: () => 0 };

function withQueryClient() {
  const queryClient = new QueryClient();
  const wrapper = ({ children }: { children: ReactNode }) => createElement(QueryClientProvider, { client: queryClient }, children);
  return { queryClient, wrapper };
}

describe("useCounterWebSocket", () => {
  it("reports the connection and keeps the query cache in sync with every update", () => {
    const fakes = fakeWebSockets();
    const { queryClient, wrapper } = withQueryClient();
    const onUpdate = vi.fn();
    queryClient.setQueryData(counterQueryKeys.history("c"), []);
    const { result } = renderHook(
      () => useCounterWebSocket("c", { url: "http://s", onUpdate, clientOptions: { WebSocket: fakes.WebSocket } }),
      { wrapper },
    );
    expect(result.current).toMatchObject({ isConnected: false, isConnecting: true, error: null, lastUpdate: null });
    act(() => fakes.last().open());
    expect(result.current).toMatchObject({ isConnected: true, isConnecting: false });

    const update = { type: "increment", value: 5, previousValue: 4, metadata, timestamp: "t" };
    act(() => fakes.last().receive(update));
    expect(queryClient.getQueryData(counterQueryKeys.value("c"))).toEqual({ value: 5 });
    expect(queryClient.getQueryData(counterQueryKeys.metadata("c"))).toEqual(metadata);
    expect(queryClient.getQueryState(counterQueryKeys.history("c"))?.isInvalidated).toBe(true);
    expect(result.current.lastUpdate).toBeInstanceOf(Date);
    expect(onUpdate).toHaveBeenCalledWith(update);
  });

  it("uses the app's own query keys", () => {
    const fakes = fakeWebSockets();
    const { queryClient, wrapper } = withQueryClient();
    const queryKeys = {
      value: (name: string) => ["rpc", "counter.getValue", name],
      metadata: (name: string) => ["rpc", "counter.getMetadata", name],
      history: (name: string) => ["rpc", "counter.getHistory", name],
    };
    renderHook(() => useCounterWebSocket("c", { url: "http://s", queryKeys, clientOptions: { WebSocket: fakes.WebSocket } }), { wrapper });
    act(() => fakes.last().open());
    act(() => fakes.last().receive({ type: "reset", value: 0, previousValue: 5, metadata, timestamp: "t" }));
    expect(queryClient.getQueryData(["rpc", "counter.getValue", "c"])).toEqual({ value: 0 });
  });

  it("reports a lost connection, re-reads the counter after reconnecting, and closes on unmount", async () => {
    vi.useFakeTimers();
    try {
      const fakes = fakeWebSockets();
      const { queryClient, wrapper } = withQueryClient();
      const { result, unmount } = renderHook(
        () => useCounterWebSocket("c", { url: "http://s", clientOptions: { WebSocket: fakes.WebSocket, ...noJitter } }),
        { wrapper },
      );
      act(() => fakes.last().open());
      queryClient.setQueryData(counterQueryKeys.value("c"), { value: 1 });
      act(() => fakes.last().serverClose(1006));
      expect(result.current.error?.message).toMatch(/connection lost \(1006/);
      expect(result.current.isConnecting).toBe(true);
      await act(() => vi.advanceTimersByTimeAsync(0));
      act(() => fakes.last().open());
      expect(result.current).toMatchObject({ isConnected: true, error: null });
      expect(queryClient.getQueryState(counterQueryKeys.value("c"))?.isInvalidated).toBe(true);
      unmount();
      expect(fakes.last().closedBy).toBeDefined();
    } finally {
      vi.useRealTimers();
    }
  });

  it("takes the seed's reconnectInterval and pingInterval", async () => {
    vi.useFakeTimers();
    try {
      const fakes = fakeWebSockets();
      const { wrapper } = withQueryClient();
      renderHook(
        () =>
          useCounterWebSocket("c", {
            url: "http://s",
            reconnectInterval: 3000,
            pingInterval: 30_000,
            clientOptions: { WebSocket: fakes.WebSocket, random: () => 0.999 },
          }),
        { wrapper },
      );
      act(() => fakes.last().open());
      await act(() => vi.advanceTimersByTimeAsync(29_999));
      expect(fakes.last().sent).toEqual([]);
      await act(() => vi.advanceTimersByTimeAsync(1));
      expect(fakes.last().frames()).toEqual([{ type: "ping" }]);
      act(() => fakes.last().serverClose());
      await act(() => vi.advanceTimersByTimeAsync(2996)); // 0.999 × 3000 = 2997
      expect(fakes.sockets.length).toBe(1);
      await act(() => vi.advanceTimersByTimeAsync(1));
      expect(fakes.sockets.length).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("stays closed while disabled", () => {
    const fakes = fakeWebSockets();
    const { wrapper } = withQueryClient();
    const { result, rerender } = renderHook(
      ({ enabled }) => useCounterWebSocket("c", { enabled, url: "http://s", clientOptions: { WebSocket: fakes.WebSocket } }),
      { wrapper, initialProps: { enabled: false } },
    );
    expect(fakes.sockets.length).toBe(0);
    expect(result.current.isConnecting).toBe(false);
    rerender({ enabled: true });
    expect(fakes.sockets.length).toBe(1);
  });
});

describe("useDisplaySession", () => {
  it("holds the session state as updates arrive", () => {
    const fakes = fakeWebSockets();
    const { result } = renderHook(() =>
      useDisplaySession("t7", { url: "http://s", clientOptions: { WebSocket: fakes.WebSocket } }),
    );
    act(() => fakes.last().open());
    const state = { sessionId: "t7", tenantId: "o", currentOrder: null, transcriptions: [], displayUpdates: [], startedAt: 1 };
    act(() => fakes.last().receive({ type: "initial_state", state, timestamp: 1 }));
    expect(result.current.state).toEqual(state);
    act(() => fakes.last().receive({ type: "update", update: { type: "order_summary", total: 12 }, timestamp: 2 }));
    expect(result.current.state?.currentOrder).toEqual({ type: "order_summary", total: 12 });
    expect(result.current.lastUpdate).toEqual({ type: "order_summary", total: 12 });
  });
});

describe("useRooms", () => {
  it("collects events, keeps its rooms across a token change and uses the new token on reconnect", async () => {
    vi.useFakeTimers();
    try {
      const fakes = fakeWebSockets();
      const onReload = vi.fn();
      const { result, rerender } = renderHook(
        ({ token }) => useRooms(token, { url: "http://s", onReload, clientOptions: { WebSocket: fakes.WebSocket, ...noJitter } }),
        { initialProps: { token: "t1" } },
      );
      await act(() => vi.advanceTimersByTimeAsync(0));
      act(() => fakes.last().open());
      const event = { type: "x", data: {}, timestamp: "t", room: "branch:b", offset: 1, epoch: "E" };
      act(() => fakes.last().receive(event));
      expect(result.current.events).toEqual([event]);
      expect(result.current.lastEvent).toEqual(event);

      rerender({ token: "t2" });
      expect(fakes.sockets.length).toBe(1);
      act(() => fakes.last().serverClose());
      await act(() => vi.advanceTimersByTimeAsync(0));
      expect(fakes.last().url).toBe("ws://s/ws?token=t2");
      act(() => fakes.last().open());
      expect(fakes.last().frames()).toEqual([{ action: "subscribe", data: { room: "branch:b", offset: 1, epoch: "E" } }]);
      act(() => fakes.last().receive({ action: "subscribe", success: true, room: "branch:b", recovered: false }));
      expect(onReload).toHaveBeenCalledWith("branch:b", "not-recovered");
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not connect without a token", async () => {
    const fakes = fakeWebSockets();
    const { result } = renderHook(() => useRooms(null, { url: "http://s", clientOptions: { WebSocket: fakes.WebSocket } }));
    expect(fakes.sockets.length).toBe(0);
    await expect(result.current.subscribe("order:1")).rejects.toThrow(/no token/);
  });
});

describe("useDeviceDashboard", () => {
  it("lists devices, newest scans first, and pending tags", async () => {
    const fakes = fakeWebSockets();
    const { result } = renderHook(() =>
      useDeviceDashboard("key", { url: "http://s", clientOptions: { WebSocket: fakes.WebSocket } }),
    );
    await act(async () => {});
    act(() => fakes.last().open());
    const scan = (id: string) => ({ id, deviceId: "d", tagId: "T", location: "L", timestamp: 1, status: "known" });
    act(() => {
      fakes.last().receive({ type: "device_status", deviceId: "d", status: "online", lastSeen: 1 });
      fakes.last().receive({ type: "scan", scan: scan("s1"), user: null });
      fakes.last().receive({ type: "scan", scan: scan("s2"), user: { name: "Ada" } });
      fakes.last().receive({ type: "tag_pending_registration", deviceId: "d", tagId: "N1" });
      fakes.last().receive({ type: "tag_pending_registration", deviceId: "d", tagId: "N1" });
    });
    expect(result.current.devices).toEqual([{ deviceId: "d", status: "online", lastSeen: 1 }]);
    expect(result.current.scans.map((s) => s.scan.id)).toEqual(["s2", "s1"]);
    expect(result.current.pendingTags).toEqual([{ deviceId: "d", tagId: "N1" }]);
  });
});
