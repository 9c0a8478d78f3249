// @switchboard/react: hooks shaped like the ones Switchboard's apps already use, on
// @switchboard/client. The kiosk's socket.io hook is in "@switchboard/react/kiosk".

export { useCounterWebSocket, counterQueryKeys } from "./useCounterWebSocket.js";
export type { CounterQueryKeys, UseCounterWebSocketOptions, UseCounterWebSocketResult } from "./useCounterWebSocket.js";
export { useDisplaySession } from "./useDisplaySession.js";
export type { UseDisplaySessionOptions, UseDisplaySessionResult } from "./useDisplaySession.js";
export { useRooms } from "./useRooms.js";
export type { UseRoomsOptions, UseRoomsResult } from "./useRooms.js";
export { useDeviceDashboard } from "./useDeviceDashboard.js";
export type { UseDeviceDashboardOptions, UseDeviceDashboardResult } from "./useDeviceDashboard.js";
export type { ConnectionStatus } from "./useProtocolClient.js";
