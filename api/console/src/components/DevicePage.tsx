// One device: its health, latest values, live charts from minutes to months, its alarms, its commands and the
// reasons its messages were quarantined.

import { useEffect, useMemo, useState } from 'preact/hooks';

import { ApiError, itemsOf } from '../api';
import { canOperate, provinceName, typeName, useCenter, useLive, useNow, usePolled } from '../center';
import { metricLabel, unitSymbol } from '../i18n';
import type { Bucket, Command, DeviceDetail, DeviceHealth, Metric, QuarantineEntry, Reading } from '../types';
import { AlarmFeed } from './AlarmFeed';
import type { ChartData } from './Chart';
import { Chart } from './Chart';
import { HealthMark } from './marks';

interface Range {
  key: string;
  seconds: number;
}

// Minutes to months. Up to RAW_MAX_S the chart shows raw readings; beyond, rollups per bucket.
export const RANGES: readonly Range[] = [
  { key: '15m', seconds: 900 },
  { key: '1h', seconds: 3600 },
  { key: '6h', seconds: 6 * 3600 },
  { key: '24h', seconds: 86400 },
  { key: '7d', seconds: 7 * 86400 },
  { key: '30d', seconds: 30 * 86400 },
  { key: '90d', seconds: 90 * 86400 },
];
const RAW_MAX_S = 6 * 3600;
const TARGET_POINTS = 400;
const BUCKETS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** The bucket for a range: the smallest listed one that keeps the chart near TARGET_POINTS points. */
export function bucketFor(rangeS: number): number {
  const wanted = rangeS / TARGET_POINTS;
  return BUCKETS_S.find((b) => b >= wanted) ?? BUCKETS_S[BUCKETS_S.length - 1];
}

function rangeLabel(lang: string, range: Range): string {
  const n = Number.parseInt(range.key, 10);
  const unit = range.key.endsWith('m') ? 'minute' : range.key.endsWith('h') ? 'hour' : 'day';
  return new Intl.NumberFormat(lang === 'vi' ? 'vi-VN' : 'en-GB', { style: 'unit', unit, unitDisplay: 'short' }).format(n);
}

export function DevicePage({ deviceId }: { deviceId: string }) {
  const center = useCenter();
  const { api, t, fmt, lang, live, catalog } = center;
  useLive(live);
  const now = useNow(5_000);
  const [rangeKey, setRangeKey] = useState('1h');
  const range = RANGES.find((r) => r.key === rangeKey) ?? RANGES[1];

  const detail = usePolled(() => api.get<DeviceDetail>(`/devices/${encodeURIComponent(deviceId)}`), [deviceId], { everyMs: 60_000 });
  const health = usePolled(() => api.get<DeviceHealth>(`/device-health/${encodeURIComponent(deviceId)}`), [deviceId], {
    everyMs: 20_000,
  });

  if (detail.error) {
    const missing = detail.error instanceof ApiError && detail.error.status === 404;
    return (
      <main class="device-page">
        <a href="#/" class="back">
          {t('nav.back')}
        </a>
        <p class="error">{missing ? t('device.notFound') : t('error.generic', { m: detail.error.message })}</p>
      </main>
    );
  }
  const device = detail.data;
  if (!device) return <main class="device-page loading">{t('loading')}</main>;
  const type = catalog.types.get(device.type_code);
  const metrics: Metric[] = type?.metrics ?? device.latest.map((l) => ({ name: l.metric, unit: '', description: '', min: 0, max: 0 }));
  const liveValues = live.latest.get(deviceId);
  const seen = live.lastSeen.get(deviceId);
  const state = health.data ? (seen && now - seen < 2 * health.data.report_interval_s * 1000 ? 'online' : health.data.state) : 'unknown';
  const lastSeen = seen ? new Date(seen).toISOString() : health.data?.last_seen;

  return (
    <main class="device-page" data-device-page={deviceId}>
      <a href="#/" class="back">
        {t('nav.back')}
      </a>
      <header class="device-head">
        <h1>
          {device.name && device.name !== device.device_id ? (
            <>
              {device.name} <span class="device-id">{device.device_id}</span>
            </>
          ) : (
            device.device_id
          )}
        </h1>
        <dl class="facts">
          <div>
            <dt>{t('device.type')}</dt>
            <dd>{typeName(center, device.type_code)}</dd>
          </div>
          <div>
            <dt>{t('device.province')}</dt>
            <dd>
              {provinceName(center, device.province)} · {t(`sector.${device.sector}`)}
            </dd>
          </div>
          <div>
            <dt>{t('device.health')}</dt>
            <dd>
              <HealthMark state={state} label={t(`health.${state}`)} size={18} />
            </dd>
          </div>
          <div>
            <dt>{t('device.lastSeen')}</dt>
            <dd title={lastSeen ? fmt.dateTime(lastSeen) : ''}>{lastSeen ? fmt.age(lastSeen, now) : '—'}</dd>
          </div>
          <div>
            <dt>{t('device.interval')}</dt>
            <dd>{fmt.duration(device.report_interval_s ?? type?.report_interval_s ?? 0)}</dd>
          </div>
        </dl>
      </header>

      <section class="panel">
        <header class="panel-head">
          <h2>{t('device.latest')}</h2>
        </header>
        <div class="latest-grid">
          {metrics.map((m) => {
            const stored = device.latest.find((l) => l.metric === m.name);
            const fresh = liveValues?.get(m.name);
            const value = fresh && (!stored || fresh.ts >= stored.ts) ? fresh : stored;
            return (
              <div key={m.name} class="latest" data-latest={m.name} title={m.description}>
                <div class="latest-label">{metricLabel(lang, m.name)}</div>
                <div class="latest-value">
                  {value ? fmt.number(value.value) : '—'} <span class="unit">{unitSymbol(lang, m.unit)}</span>
                </div>
                <div class="latest-time">{value ? fmt.time(value.ts) : ''}</div>
              </div>
            );
          })}
        </div>
      </section>

      <section class="panel">
        <header class="panel-head">
          <h2>{t('device.charts')}</h2>
          <div class="ranges" role="group" aria-label={t('device.range')}>
            {RANGES.map((r) => (
              <button key={r.key} type="button" class={r.key === range.key ? 'on' : ''} data-range={r.key} onClick={() => setRangeKey(r.key)}>
                {rangeLabel(lang, r)}
              </button>
            ))}
          </div>
        </header>
        <p class="hint" data-chart-mode={range.seconds <= RAW_MAX_S ? 'raw' : 'rollup'}>{range.seconds <= RAW_MAX_S ? t('device.raw') : t('device.rollup', { b: fmt.duration(bucketFor(range.seconds)) })}</p>
        <div class="charts">
          {metrics.map((m) => (
            <MetricChart key={`${m.name}`} deviceId={deviceId} metric={m} range={range} />
          ))}
        </div>
      </section>

      <div class="device-columns">
        <AlarmFeed province={null} sector={null} deviceId={deviceId} />
        <Commands deviceId={deviceId} />
      </div>
      <Quarantine deviceId={deviceId} />
    </main>
  );
}

function MetricChart({ deviceId, metric, range }: { deviceId: string; metric: Metric; range: Range }) {
  const center = useCenter();
  const { api, fmt, lang, live, t } = center;
  const raw = range.seconds <= RAW_MAX_S;
  const [data, setData] = useState<ChartData>({ xs: [], ys: [] });
  const [error, setError] = useState<string | null>(null);
  const [reloadTick, setReloadTick] = useState(0);

  useEffect(() => {
    let cancelled = false;
    const to = new Date(Date.now() + 60_000);
    const from = new Date(to.getTime() - range.seconds * 1000 - 60_000);
    const path = `/devices/${encodeURIComponent(deviceId)}/${raw ? 'readings' : 'buckets'}`;
    const params = raw
      ? { metric: metric.name, from: from.toISOString(), to: to.toISOString(), limit: 10_000 }
      : { metric: metric.name, from: from.toISOString(), to: to.toISOString(), bucket_s: bucketFor(range.seconds) };
    api.get<unknown>(path, params).then(
      (body) => {
        if (cancelled) return;
        setError(null);
        if (raw) {
          const rows = itemsOf<Reading>(body)
            .filter((r) => r.metric === metric.name)
            .map((r) => [Date.parse(r.ts) / 1000, r.value] as const)
            .sort((a, b) => a[0] - b[0]);
          setData({ xs: rows.map((r) => r[0]), ys: rows.map((r) => r[1]) });
        } else {
          const rows = itemsOf<Bucket>(body)
            .filter((b) => b.metric === metric.name)
            .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
          setData({
            xs: rows.map((b) => Date.parse(b.start) / 1000),
            ys: rows.map((b) => b.mean),
            lows: rows.map((b) => b.minimum),
            highs: rows.map((b) => b.maximum),
          });
        }
      },
      (failure: unknown) => {
        if (!cancelled) setError(failure instanceof Error ? failure.message : String(failure));
      },
    );
    return () => {
      cancelled = true;
    };
  }, [deviceId, metric.name, range.seconds, raw, api, reloadTick]);

  // Raw ranges grow with each streamed reading; rollups are fetched again every minute.
  useEffect(() => {
    if (!raw) {
      const timer = window.setInterval(() => setReloadTick((n) => n + 1), 60_000);
      return () => window.clearInterval(timer);
    }
    return live.onReading((reading) => {
      if (reading.device_id !== deviceId || reading.metric !== metric.name) return;
      const x = Date.parse(reading.ts) / 1000;
      const horizon = Date.now() / 1000 - range.seconds;
      setData((current) => {
        const pairs = current.xs.map((xi, i) => [xi, current.ys[i]] as const).filter(([xi]) => xi >= horizon && xi !== x);
        pairs.push([x, reading.value]);
        pairs.sort((a, b) => a[0] - b[0]);
        return { xs: pairs.map((p) => p[0]), ys: pairs.map((p) => p[1]) };
      });
    });
  }, [raw, deviceId, metric.name, range.seconds, live]);

  const unit = unitSymbol(lang, metric.unit);
  return (
    <figure class="chart-box" data-chart={metric.name}>
      <figcaption>
        {metricLabel(lang, metric.name)} {unit && <span class="unit">({unit})</span>}
      </figcaption>
      {error && <p class="error">{t('error.generic', { m: error })}</p>}
      {!error && data.xs.length === 0 && <p class="empty small">{t('device.noData')}</p>}
      <Chart data={data} fmt={fmt} unit={unit} label={metricLabel(lang, metric.name)} spanS={range.seconds} height={170} />
    </figure>
  );
}

const COMMAND_NAMES = ['ping', 'reboot', 'set_interval'] as const;

function Commands({ deviceId }: { deviceId: string }) {
  const { api, t, fmt, me } = useCenter();
  const { data, error, reload } = usePolled(
    () => api.get<unknown>(`/devices/${encodeURIComponent(deviceId)}/commands`, { limit: 20 }).then((body) => itemsOf<Command>(body)),
    [deviceId],
    { everyMs: 10_000 },
  );
  const [name, setName] = useState<(typeof COMMAND_NAMES)[number]>('ping');
  const [seconds, setSeconds] = useState('60');
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const send = async () => {
    setBusy(true);
    setMessage(null);
    try {
      const params = name === 'set_interval' ? { seconds: Number.parseInt(seconds, 10) } : {};
      await api.post(`/devices/${encodeURIComponent(deviceId)}/commands`, { name, params });
      reload();
    } catch (failure) {
      setMessage(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="panel commands" aria-label={t('device.commands')}>
      <header class="panel-head">
        <h2>{t('device.commands')}</h2>
      </header>
      {canOperate(me) ? (
        <form
          class="command-form"
          onSubmit={(e) => {
            e.preventDefault();
            void send();
          }}
        >
          <select value={name} onChange={(e) => setName((e.target as HTMLSelectElement).value as (typeof COMMAND_NAMES)[number])}>
            {COMMAND_NAMES.map((n) => (
              <option key={n} value={n}>
                {t(`cmd.${n}`)}
              </option>
            ))}
          </select>
          {name === 'set_interval' && (
            <label>
              {t('device.seconds')}{' '}
              <input type="number" min={1} max={86400} value={seconds} onInput={(e) => setSeconds((e.target as HTMLInputElement).value)} />
            </label>
          )}
          <button type="submit" disabled={busy}>
            {t('device.send')}
          </button>
        </form>
      ) : (
        <p class="hint">{t('device.viewerOnly')}</p>
      )}
      {message && <p class="error">{message}</p>}
      {error && <p class="error">{t('error.generic', { m: error.message })}</p>}
      {data && !data.length && <p class="empty">{t('device.noCommands')}</p>}
      {data && data.length > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th>{t('col.time')}</th>
              <th>{t('col.command')}</th>
              <th>{t('col.status')}</th>
              <th>{t('col.by')}</th>
            </tr>
          </thead>
          <tbody>
            {data.map((c) => (
              <tr key={c.command_id}>
                <td>{fmt.shortDateTime(c.created_at)}</td>
                <td>
                  {c.name}
                  {Object.keys(c.params ?? {}).length ? ` ${JSON.stringify(c.params)}` : ''}
                </td>
                <td title={c.detail}>{c.status}</td>
                <td>{c.actor}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// The quarantine endpoint is found in the center's own OpenAPI document, so the page works with a center that
// has it and says so with one that has not.
// A device's own route (`/devices/{device_id}/…quarantine…`) is read by anyone who may see the device; the
// center-wide list (`/quarantine?device_id=`) is an admin's.
let quarantinePath: Promise<{ path: string; byQuery: boolean } | null> | null = null;

function findQuarantinePath(): Promise<{ path: string; byQuery: boolean } | null> {
  if (!quarantinePath) {
    quarantinePath = fetch('/openapi.json', { credentials: 'omit' })
      .then((r) => (r.ok ? r.json() : null))
      .then((doc: { paths?: Record<string, Record<string, { parameters?: { name: string }[] }>> } | null) => {
        const paths = Object.entries(doc?.paths ?? {}).filter(([p, ops]) => p.includes('quarantine') && ops.get);
        const own = paths.find(([p]) => p.includes('{device_id}') && !p.endsWith('}'));
        if (own) return { path: own[0], byQuery: false };
        const listed = paths.find(([p, ops]) => !p.includes('{') && (ops.get.parameters ?? []).some((q) => q.name === 'device_id'));
        return listed ? { path: listed[0], byQuery: true } : null;
      })
      .catch(() => null);
  }
  return quarantinePath;
}

function Quarantine({ deviceId }: { deviceId: string }) {
  const { api, t, fmt, me } = useCenter();
  const [adminOnly, setAdminOnly] = useState(false);
  const { data, error } = usePolled(
    async () => {
      const found = await findQuarantinePath();
      if (!found) return null;
      if (found.byQuery && me.role !== 'admin') {
        setAdminOnly(true);
        return [];
      }
      const body = found.byQuery
        ? await api.get<unknown>(found.path, { device_id: deviceId, limit: 20 })
        : await api.get<unknown>(found.path.replace('{device_id}', encodeURIComponent(deviceId)), { limit: 20 });
      return itemsOf<QuarantineEntry>(body);
    },
    [deviceId],
    { everyMs: 60_000 },
  );
  const rows = useMemo(() => data ?? [], [data]);
  return (
    <section class="panel quarantine" aria-label={t('device.quarantine')}>
      <header class="panel-head">
        <h2>{t('device.quarantine')}</h2>
      </header>
      {error && <p class="error">{t('error.generic', { m: error.message })}</p>}
      {data === null && <p class="hint">{t('device.quarantineUnavailable')}</p>}
      {adminOnly && <p class="hint">{t('device.quarantineAdmin')}</p>}
      {data && !adminOnly && !rows.length && <p class="empty">{t('device.noQuarantine')}</p>}
      {rows.length > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th>{t('col.time')}</th>
              <th>{t('col.reason')}</th>
              <th>{t('col.detail')}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((q, i) => (
              <tr key={q.id ?? i} data-quarantine-reason={q.reason}>
                <td>{fmt.shortDateTime(q.received_at)}</td>
                <td>
                  <code>{q.reason}</code>
                </td>
                <td class="detail">{q.detail ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
