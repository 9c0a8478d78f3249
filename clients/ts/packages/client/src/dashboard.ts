// The RFID device dashboard feed (PROTOCOLS.md §1): scans, device status and tags waiting for
// registration, with the admin key as `?token=` since a browser cannot set headers on a socket.

import { ProtocolClient, webSocketUrl, type ClientOptions, type ProtocolEvents } from "./protocol.js";

export interface Scan {
  id: string;
  deviceId: string;
  tagId: string;
  location: string;
  timestamp: number;
  status: "known" | "unknown" | "registration";
}

export type DashboardFrame =
  | { type: "scan"; scan: Scan; user: Record<string, unknown> | null }
  | { type: "device_status"; deviceId: string; status: "online" | "offline"; lastSeen: number }
  | { type: "tag_pending_registration"; deviceId: string; tagId: string };

export interface DeviceStatus {
  deviceId: string;
  status: "online" | "offline";
  lastSeen: number;
}

export interface DashboardEvents extends ProtocolEvents {
  frame: DashboardFrame;
}

export interface DashboardOptions extends ClientOptions {
  url?: string;
}

export class DeviceDashboardClient extends ProtocolClient<DashboardEvents> {
  /** The latest status of every device heard of on this feed. */
  readonly devices = new Map<string, DeviceStatus>();

  constructor(key: string | (() => string | Promise<string>), options: DashboardOptions = {}) {
    const url = async () => {
      const value = typeof key === "string" ? key : await key();
      return webSocketUrl(options.url, `/ws/dashboard?token=${encodeURIComponent(value)}`);
    };
    // The dashboard protocol has no ping frame: a dead connection shows as a close.
    super(url, options, undefined);
    this.start(options.startClosed);
  }

  protected onFrame(frame: Record<string, unknown>): void {
    if (frame.type === "device_status") {
      const { deviceId, status, lastSeen } = frame as unknown as DeviceStatus;
      this.devices.set(deviceId, { deviceId, status, lastSeen });
    } else if (frame.type !== "scan" && frame.type !== "tag_pending_registration") {
      return;
    }
    this.emit("frame", frame as unknown as DashboardFrame);
  }
}
