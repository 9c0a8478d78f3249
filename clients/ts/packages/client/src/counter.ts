// Live counters (PROTOCOLS.md §3): a socket that hears every stored change of one counter and
// can run operations over it, and the HTTP RPC the seed's mutations call.

import { ProtocolClient, httpUrl, webSocketUrl, type ClientOptions, type ProtocolEvents } from "./protocol.js";

export interface CounterMetadata {
  id: number;
  name: string;
  value: number;
  createdAt: string;
  updatedAt: string;
  operationCount: number;
}

export type CounterOperation = "increment" | "decrement" | "setValue" | "reset";

/** Broadcast to every socket of the counter after a mutation is stored. */
export interface CounterUpdate {
  type: CounterOperation;
  value: number;
  previousValue: number;
  metadata: CounterMetadata;
  timestamp: string;
}

export interface CounterMutationResult {
  value: number;
  previousValue: number;
  metadata: CounterMetadata;
}

export interface CounterHistoryEntry {
  op: CounterOperation;
  amount?: number;
  value: number;
  previousValue: number;
  timestamp: string;
}

export interface CounterEvents extends ProtocolEvents {
  update: CounterUpdate;
}

export interface CounterOptions extends ClientOptions {
  /** The server; default the page's origin. */
  url?: string;
  /** How long an operation over the socket waits for its result, in ms (counted from when it
   * was sent or queued). Default 30000. */
  operationTimeout?: number;
}

type SocketOperation =
  | { type: "increment" | "decrement"; amount?: number }
  | { type: "setValue"; value: number }
  | { type: "reset" };

/** One counter's socket. Operations sent while disconnected wait in the offline queue and run
 * in order once the socket is back. */
export class CounterClient extends ProtocolClient<CounterEvents> {
  private nextId = 0;
  private waiting = new Map<string, { resolve: (r: CounterMutationResult) => void; reject: (e: Error) => void }>();
  private readonly operationTimeout: number;

  constructor(
    readonly name: string,
    options: CounterOptions = {},
  ) {
    super(webSocketUrl(options.url, `/ws/counter/${encodeURIComponent(name)}`), options, {
      message: { type: "ping" },
      isPong: (frame) => frame.type === "pong",
    });
    this.operationTimeout = options.operationTimeout ?? 30_000;
    this.start(options.startClosed);
  }

  increment(amount = 1): Promise<CounterMutationResult> {
    return this.operate({ type: "increment", amount });
  }

  decrement(amount = 1): Promise<CounterMutationResult> {
    return this.operate({ type: "decrement", amount });
  }

  setValue(value: number): Promise<CounterMutationResult> {
    return this.operate({ type: "setValue", value });
  }

  reset(): Promise<CounterMutationResult> {
    return this.operate({ type: "reset" });
  }

  protected onFrame(frame: Record<string, unknown>): void {
    if (frame.type === "result" && typeof frame.id === "string") {
      const waiter = this.waiting.get(frame.id);
      this.waiting.delete(frame.id);
      waiter?.resolve(frame as unknown as CounterMutationResult);
    } else if (frame.type === "error" && typeof frame.id === "string") {
      const waiter = this.waiting.get(frame.id);
      this.waiting.delete(frame.id);
      waiter?.reject(new Error(String(frame.message)));
    } else if (frame.type === "error") {
      this.emit("error", { error: new Error(String(frame.message)) });
    } else if (isOperation(frame.type)) {
      this.emit("update", frame as unknown as CounterUpdate);
    }
  }

  private operate(operation: SocketOperation): Promise<CounterMutationResult> {
    const id = `op${++this.nextId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no result for ${operation.type} within ${this.operationTimeout} ms`));
      }, this.operationTimeout);
      this.waiting.set(id, {
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.sendFrame({ ...operation, id });
    });
  }
}

function isOperation(type: unknown): type is CounterOperation {
  return type === "increment" || type === "decrement" || type === "setValue" || type === "reset";
}

/** The HTTP RPC of counters (`POST /rpc/counter.<op>`), for queries and mutations. */
export function counterRpc(base?: string, fetchImpl: typeof fetch = (...args) => fetch(...args)) {
  async function call<T>(op: string, body: object): Promise<T> {
    const response = await fetchImpl(httpUrl(base, `/rpc/counter.${op}`), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = (await response.json()) as T & { error?: string };
    if (!response.ok) throw new Error(json.error ?? `counter.${op} answered ${response.status}`);
    return json;
  }
  return {
    increment: (name: string, amount = 1) => call<CounterMutationResult>("increment", { name, amount }),
    decrement: (name: string, amount = 1) => call<CounterMutationResult>("decrement", { name, amount }),
    setValue: (name: string, value: number) => call<CounterMutationResult>("setValue", { name, value }),
    reset: (name: string) => call<CounterMutationResult>("reset", { name }),
    getValue: (name: string) => call<{ value: number }>("getValue", { name }),
    getMetadata: (name: string) => call<CounterMetadata>("getMetadata", { name }),
    getHistory: (name: string, limit = 50) => call<CounterHistoryEntry[]>("getHistory", { name, limit }),
  };
}
