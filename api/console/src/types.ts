// The shapes of the API's answers that the console reads (see /openapi.json for the full schemas).

export type Sector = 'agriculture' | 'energy' | 'transport' | 'health';
export const SECTORS: readonly Sector[] = ['agriculture', 'energy', 'transport', 'health'];

export type Severity = 'critical' | 'major' | 'minor' | 'warning';
// Most severe first.
export const SEVERITIES: readonly Severity[] = ['critical', 'major', 'minor', 'warning'];

export type AlarmStatus = 'active' | 'acknowledged' | 'cleared';
export type HealthState = 'online' | 'silent' | 'offline' | 'unknown';
export const HEALTH_STATES: readonly HealthState[] = ['online', 'silent', 'offline', 'unknown'];

export type Role = 'viewer' | 'operator' | 'admin';

export interface Me {
  kind: 'user' | 'key';
  name: string;
  display_name: string | null;
  role: Role;
  provinces: string[] | null;
  sectors: string[] | null;
  expires_at: string | null;
}

export interface TokenPair {
  access_token: string;
  expires_in: number;
  access_expires_at: string;
  refresh_token: string;
  refresh_expires_at: string;
}

export interface Province {
  code: string;
  name: string;
  name_ascii: string;
  kind: 'province' | 'city';
  center: [number, number] | null;
}

export interface Metric {
  name: string;
  unit: string;
  description: string;
  min: number;
  max: number;
  group?: string | null;
}

export interface DeviceType {
  code: string;
  name: string;
  name_vi?: string | null;
  sector: Sector;
  description: string;
  report_interval_s: number;
  metrics: Metric[];
}

export interface DeviceHealth {
  device_id: string;
  province: string;
  sector: Sector;
  type_code: string;
  report_interval_s: number;
  state: HealthState;
  online: boolean | null;
  status_changed_at: string | null;
  last_seen: string | null;
}

export interface LatestValue {
  metric: string;
  ts: string;
  value: number;
  quality: number;
}

export interface DeviceDetail {
  device_id: string;
  type_code: string;
  province: string;
  sector: Sector;
  name: string;
  status: string;
  created_at: string;
  report_interval_s: number | null;
  latest: LatestValue[];
}

export interface FleetLatest {
  device_id: string;
  province: string;
  sector: Sector;
  type_code: string;
  metric: string;
  ts: string;
  value: number;
}

export interface Alarm {
  id: number;
  device_id: string;
  metric: string | null;
  kind: string;
  province: string;
  sector: Sector;
  severity: Severity;
  status: AlarmStatus;
  message: string;
  occurrences: number;
  raised_at: string;
  updated_at: string;
  last_value: number | null;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
  cleared_by: string | null;
  cleared_at: string | null;
  assigned_to: string | null; // a username
  assigned_at: string | null;
}

// GET /users (admins only): who an admin may give an alarm to.
export interface UserSummary {
  username: string;
  display_name: string;
  role: Role;
  provinces: string[] | null; // null: every province
  sectors: string[] | null;
  disabled: boolean;
}

export interface SectorKpi {
  province: string;
  sector: Sector;
  devices: { total: number; online: number; silent: number; offline: number; unknown: number };
  open_alarms: { critical: number; major: number; minor: number; warning: number; unacknowledged: number };
  readings_per_minute: number;
}

export interface Total {
  province: string;
  sector: Sector;
  type_code: string;
  metric: string;
  devices: number;
  total: number;
  mean: number;
  minimum: number;
  maximum: number;
  newest: string;
}

export interface Reading {
  ts: string;
  metric: string;
  value: number;
}

export interface Bucket {
  start: string;
  metric: string;
  count: number;
  mean: number;
  minimum: number;
  maximum: number;
}

export interface Command {
  command_id: string;
  name: string;
  params: Record<string, unknown>;
  status: string;
  created_at: string;
  sent_at: string | null;
  acked_at: string | null;
  detail: string;
  actor: string;
}

export interface QuarantineEntry {
  id?: number;
  received_at: string;
  topic?: string;
  reason: string;
  detail?: string;
  payload_size?: number;
}

// Events of GET /stream.
export interface ReadingEvent {
  ts: string;
  device_id: string;
  metric: string;
  value: number;
  quality: number;
  province: string;
  sector: Sector;
}

export interface AlarmEvent {
  event_id: number;
  at: string;
  alarm_id: number;
  device_id: string;
  province: string;
  sector: Sector;
  status: AlarmStatus;
  severity: Severity;
  kind: string;
  message: string;
  assigned_to: string | null;
}
