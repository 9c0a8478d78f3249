// @switchboard/client: the reconnecting socket, the recovery bookkeeping, and one typed client
// per Switchboard protocol.

export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
export { BoundedQueue, type OverflowPolicy } from "./queue.js";
export { Emitter, type Listener } from "./emitter.js";
export {
  ReconnectingSocket,
  CLOSE_CONNECT_TIMEOUT,
  CLOSE_HEARTBEAT_TIMEOUT,
  type CloseInfo,
  type ConnectionState,
  type HeartbeatOptions,
  type SocketEvents,
  type SocketOptions,
  type UrlProvider,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./socket.js";
export { RecoveryBook, type HistoryEvent, type RoomPosition, type Verdict } from "./recovery.js";
export { httpUrl, webSocketUrl, ProtocolClient, type ClientOptions, type ProtocolEvents } from "./protocol.js";
export * from "./counter.js";
export * from "./display.js";
export * from "./rooms.js";
export * from "./dashboard.js";

/** The Switchboard server versions this client speaks to (PROTOCOLS.md as of server 0.1). */
export const COMPATIBLE_SERVER = ">=0.1.0 <0.2.0";
