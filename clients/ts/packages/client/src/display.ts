// Restaurant display sessions (PROTOCOLS.md §5): a display socket that keeps the session's state
// current. No recovery is needed: every (re)connect starts with the whole state.

import { ProtocolClient, webSocketUrl, type ClientOptions, type ProtocolEvents } from "./protocol.js";

/** An update as the backend posted it: a `type` and whatever that type carries. */
export interface DisplayUpdate {
  type: "transcription" | "dish_card" | "menu" | "order_summary" | (string & {});
  timestamp?: number;
  [field: string]: unknown;
}

export interface DisplayState {
  sessionId: string;
  tenantId: string | null;
  currentOrder: DisplayUpdate | null;
  transcriptions: DisplayUpdate[];
  displayUpdates: DisplayUpdate[];
  startedAt: number | null;
}

export interface DisplayEvents extends ProtocolEvents {
  /** The state after an `initial_state` or an update. */
  state_change: DisplayState;
  update: DisplayUpdate;
}

export interface DisplayOptions extends ClientOptions {
  url?: string;
  /** Entries kept per list, as the server's `display_list_limit`. Default 100. */
  listLimit?: number;
}

/** Applies an update to a state by the server's rules: transcriptions appended, an
 * order_summary becomes the current order, anything else is appended to displayUpdates. */
export function applyDisplayUpdate(state: DisplayState, update: DisplayUpdate, listLimit = 100): DisplayState {
  if (update.type === "order_summary") return { ...state, currentOrder: update };
  const key = update.type === "transcription" ? "transcriptions" : "displayUpdates";
  return { ...state, [key]: [...state[key], update].slice(-listLimit) };
}

export class DisplayClient extends ProtocolClient<DisplayEvents> {
  private current: DisplayState | undefined;
  private readonly listLimit: number;

  constructor(
    readonly sessionId: string,
    options: DisplayOptions = {},
  ) {
    super(webSocketUrl(options.url, `/session/${encodeURIComponent(sessionId)}/display`), options, {
      message: { type: "ping" },
      isPong: (frame) => frame.type === "pong",
    });
    this.listLimit = options.listLimit ?? 100;
    this.start(options.startClosed);
  }

  /** The session's state, once the first `initial_state` arrived. */
  get sessionState(): DisplayState | undefined {
    return this.current;
  }

  protected onFrame(frame: Record<string, unknown>): void {
    if (frame.type === "initial_state") {
      this.current = frame.state as DisplayState;
    } else if (frame.type === "update" && this.current) {
      const update = frame.update as DisplayUpdate;
      this.current = applyDisplayUpdate(this.current, update, this.listLimit);
      this.emit("update", update);
    } else {
      return;
    }
    this.emit("state_change", this.current);
  }
}
