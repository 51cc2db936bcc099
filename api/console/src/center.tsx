// What every part of the console shares once logged in: the API client, the live stream and what it brought,
// the caller, the catalog, and the language and time-zone choices.

import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';

import type { Api } from './api';
import type { Formats } from './format';
import type { Lang, Translate } from './i18n';
import type { LiveStream, StreamEvent } from './stream';
import type { AlarmEvent, DeviceType, Me, Province, ReadingEvent } from './types';

export interface Catalog {
  types: Map<string, DeviceType>;
  provinces: Province[];
  provinceByCode: Map<string, Province>;
}

export interface Center {
  api: Api;
  stream: LiveStream;
  live: LiveData;
  me: Me;
  catalog: Catalog;
  lang: Lang;
  t: Translate;
  fmt: Formats;
  setLang(lang: Lang): void;
  setTimeZone(zone: string): void;
  kiosk: boolean;
}

export const CenterContext = createContext<Center | null>(null);

export function useCenter(): Center {
  const center = useContext(CenterContext);
  if (!center) throw new Error('useCenter outside the logged-in console');
  return center;
}

export function provinceName(center: Pick<Center, 'catalog' | 'lang'>, code: string): string {
  const province = center.catalog.provinceByCode.get(code);
  if (!province) return code;
  return center.lang === 'vi' ? province.name : province.name_ascii;
}

export function typeName(center: Pick<Center, 'catalog' | 'lang'>, code: string): string {
  const type = center.catalog.types.get(code);
  if (!type) return code;
  return center.lang === 'vi' ? (type.name_vi ?? type.name) : type.name;
}

export function canOperate(me: Me): boolean {
  return me.role === 'operator' || me.role === 'admin';
}

const RECENT_MAX = 40;

export interface LatestPoint {
  value: number;
  ts: string;
  receivedAt: number;
}

/** What the stream brought: the newest readings, each device's latest values, and a count of alarm events. */
export class LiveData {
  recent: ReadingEvent[] = [];
  latest = new Map<string, Map<string, LatestPoint>>();
  lastSeen = new Map<string, number>();
  alarmEvents = 0;
  version = 0;
  private listeners = new Set<() => void>();
  private readingListeners = new Set<(reading: ReadingEvent) => void>();
  private flushScheduled = false;

  constructor(stream: LiveStream) {
    stream.onEvent((event) => this.take(event));
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onReading(listener: (reading: ReadingEvent) => void): () => void {
    this.readingListeners.add(listener);
    return () => this.readingListeners.delete(listener);
  }

  private take(event: StreamEvent): void {
    if (event.event === 'reading') {
      let reading: ReadingEvent;
      try {
        reading = JSON.parse(event.data) as ReadingEvent;
      } catch {
        return;
      }
      this.recent.unshift(reading);
      if (this.recent.length > RECENT_MAX) this.recent.length = RECENT_MAX;
      let values = this.latest.get(reading.device_id);
      if (!values) {
        values = new Map();
        this.latest.set(reading.device_id, values);
      }
      const previous = values.get(reading.metric);
      if (!previous || previous.ts <= reading.ts) {
        values.set(reading.metric, { value: reading.value, ts: reading.ts, receivedAt: Date.now() });
      }
      this.lastSeen.set(reading.device_id, Date.now());
      for (const listener of this.readingListeners) listener(reading);
      this.changed();
    } else if (event.event === 'alarm') {
      try {
        JSON.parse(event.data) as AlarmEvent;
      } catch {
        return;
      }
      this.alarmEvents += 1;
      this.changed();
    }
  }

  // Many readings a second re-render once per frame, not once per reading.
  private changed(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    requestAnimationFrame(() => {
      this.flushScheduled = false;
      this.version += 1;
      for (const listener of this.listeners) listener();
    });
  }
}

/** Re-render when the live data changes; returns its version. */
export function useLive(live: LiveData): number {
  const [version, setVersion] = useState(live.version);
  useEffect(() => live.subscribe(() => setVersion(live.version)), [live]);
  return version;
}

/** Load `load()` now, again when `deps` change, every `everyMs`, and when `trigger` changes (debounced). */
export function usePolled<T>(
  load: () => Promise<T>,
  deps: unknown[],
  { everyMs, trigger }: { everyMs?: number; trigger?: number } = {},
): { data: T | undefined; error: Error | null; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | null>(null);
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  useEffect(() => {
    const mine = ++generation.current;
    load().then(
      (value) => {
        if (generation.current === mine) {
          setData(value);
          setError(null);
        }
      },
      (failure: unknown) => {
        if (generation.current === mine) setError(failure instanceof Error ? failure : new Error(String(failure)));
      },
    );
  }, [...deps, tick]);
  useEffect(() => {
    if (!everyMs) return undefined;
    const timer = window.setInterval(() => setTick((n) => n + 1), everyMs);
    return () => window.clearInterval(timer);
  }, [everyMs]);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return undefined;
    }
    const timer = window.setTimeout(() => setTick((n) => n + 1), 400);
    return () => window.clearTimeout(timer);
  }, [trigger]);
  return { data, error, reload: () => setTick((n) => n + 1) };
}

/** The current time, updated every `everyMs`. */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), everyMs);
    return () => window.clearInterval(timer);
  }, [everyMs]);
  return now;
}
