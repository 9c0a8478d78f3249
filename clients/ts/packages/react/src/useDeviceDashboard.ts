// useDeviceDashboard: the RFID dashboard's live feed — devices online or offline, the latest
// scans, and tags waiting to be assigned.

import { useEffect, useState } from "react";
import {
  DeviceDashboardClient,
  type DashboardOptions,
  type DeviceStatus,
  type Scan,
} from "@switchboard/client";
import { useLatest, useProtocolClient, type ConnectionStatus } from "./useProtocolClient.js";

export interface UseDeviceDashboardOptions {
  url?: string;
  /** How many recent scans `scans` keeps. Default 50. */
  keep?: number;
  clientOptions?: Omit<DashboardOptions, "url">;
}

export interface UseDeviceDashboardResult extends ConnectionStatus {
  devices: DeviceStatus[];
  /** Newest first. */
  scans: Array<{ scan: Scan; user: Record<string, unknown> | null }>;
  pendingTags: Array<{ deviceId: string; tagId: string }>;
}

/** `key` is the admin API key (sent as `?token=`); null stays disconnected. */
export function useDeviceDashboard(
  key: string | null,
  options: UseDeviceDashboardOptions = {},
): UseDeviceDashboardResult {
  const latest = useLatest(options);
  const [devices, setDevices] = useState<DeviceStatus[]>([]);
  const [scans, setScans] = useState<UseDeviceDashboardResult["scans"]>([]);
  const [pendingTags, setPendingTags] = useState<UseDeviceDashboardResult["pendingTags"]>([]);
  const status = useProtocolClient(
    key === null ? null : () => new DeviceDashboardClient(key, { ...latest.current.clientOptions, url: options.url }),
    [key, options.url],
  );
  const { client } = status;

  useEffect(() => {
    if (!client) return;
    return client.on("frame", (frame) => {
      if (frame.type === "device_status") {
        setDevices([...client.devices.values()]);
      } else if (frame.type === "scan") {
        const keep = latest.current.keep ?? 50;
        setScans((list) => [{ scan: frame.scan, user: frame.user }, ...list].slice(0, keep));
      } else {
        const { deviceId, tagId } = frame;
        setPendingTags((list) => [...list.filter((t) => t.tagId !== tagId), { deviceId, tagId }]);
      }
    });
  }, [client, latest]);

  return { isConnected: status.isConnected, isConnecting: status.isConnecting, error: status.error, devices, scans, pendingTags };
}
