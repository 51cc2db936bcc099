// The overview (laptop) and the wall-screen kiosk: map, KPI tiles, alarm feed, the newest readings.

import { useEffect, useMemo, useState } from 'preact/hooks';

import { provinceName, typeName, useCenter, useLive, useNow, usePolled } from '../center';
import type { DeviceHealth, FleetLatest, HealthState, Sector, SectorKpi } from '../types';
import { SECTORS } from '../types';
import { AlarmFeed } from './AlarmFeed';
import { ProvinceTable, SectorTiles, TotalsStrip } from './Kpis';
import { LiveFeed } from './LiveFeed';
import { MapView } from './MapView';
import { HealthMark } from './marks';

const HEALTH_LIMIT = 10_000;

/** The fleet as the map needs it: every device's health, and the buses' latest positions. */
function useFleet(province: string | null) {
  const { api, catalog } = useCenter();
  const health = usePolled(() => api.get<DeviceHealth[]>('/device-health', { province, limit: HEALTH_LIMIT }), [province], {
    everyMs: 30_000,
  });
  const positioned = [...catalog.types.values()].filter((t) => t.metrics.some((m) => m.name === 'latitude') && t.metrics.some((m) => m.name === 'longitude'));
  const buses = usePolled(
    async () => {
      const positions = new Map<string, [number, number]>();
      for (const type of positioned) {
        const [lats, lons] = await Promise.all(
          ['latitude', 'longitude'].map((metric) => api.get<FleetLatest[]>('/latest', { type: type.code, metric, province })),
        );
        const lonOf = new Map(lons.map((r) => [r.device_id, r.value]));
        for (const lat of lats) {
          const lon = lonOf.get(lat.device_id);
          if (lon !== undefined) positions.set(lat.device_id, [lat.value, lon]);
        }
      }
      return positions;
    },
    [province],
    { everyMs: 60_000 },
  );
  return { devices: health.data ?? [], healthError: health.error, busPositions: buses.data ?? new Map<string, [number, number]>() };
}

function useKpis(province: string | null) {
  const { api, live } = useCenter();
  return usePolled(() => api.get<SectorKpi[]>('/kpis', { province }), [province], { everyMs: 15_000, trigger: live.alarmEvents });
}

export function Overview({
  province,
  sector,
  setProvince,
}: {
  province: string | null;
  sector: Sector | null;
  setProvince: (code: string | null) => void;
}) {
  const center = useCenter();
  const { t } = center;
  const fleet = useFleet(null);
  const kpis = useKpis(null);
  const typeOf = useMemo(() => new Map(fleet.devices.map((d) => [d.device_id, d.type_code])), [fleet.devices]);
  const rows = (kpis.data ?? []).filter((r) => (!province || r.province === province) && (!sector || r.sector === sector));
  const devices = fleet.devices.filter((d) => !province || d.province === province);
  return (
    <main class="overview">
      <section class="panel map-panel" aria-label={t('map.title')}>
        <header class="panel-head">
          <h2>{t('map.title')}</h2>
        </header>
        {fleet.healthError && <p class="error">{t('error.generic', { m: fleet.healthError.message })}</p>}
        <MapView
          devices={devices}
          focus={province}
          sector={sector}
          busPositions={fleet.busPositions}
          onDevice={(id) => (location.hash = `#/device/${encodeURIComponent(id)}`)}
          onProvince={(code) => setProvince(province === code ? null : code)}
        />
      </section>
      <div class="overview-main">
        <section class="band">
          <SectorTiles rows={rows} sectors={sector ? [sector] : SECTORS} />
          <TotalsStrip province={province} sector={sector} />
        </section>
        {kpis.error && <p class="error">{t('error.generic', { m: kpis.error.message })}</p>}
        <div class="overview-grid">
          <AlarmFeed province={province} sector={sector} />
          <div class="side">
            <LiveFeed province={province} sector={sector} typeOf={typeOf} />
            <section class="panel" aria-label={t('kpi.provinces')}>
              <header class="panel-head">
                <h2>{t('kpi.provinces')}</h2>
              </header>
              <ProvinceTable rows={(kpis.data ?? []).filter((r) => !sector || r.sector === sector)} selected={province} onSelect={setProvince} />
            </section>
          </div>
        </div>
      </div>
    </main>
  );
}

const STATE_ORDER: Record<HealthState, number> = { offline: 0, silent: 1, unknown: 2, online: 3 };

/** Devices that need a look first: offline, silent, unknown, then the rest, each with its shape and word. */
function DeviceList({ devices, rows }: { devices: DeviceHealth[]; rows: number }) {
  const center = useCenter();
  const { t, fmt } = center;
  const now = useNow(10_000);
  const ordered = [...devices].sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.device_id.localeCompare(b.device_id));
  return (
    <section class="panel" aria-label={t('kpi.devices')}>
      <header class="panel-head">
        <h2>
          {t('kpi.devices')} <span class="count">{fmt.integer(devices.length)}</span>
        </h2>
      </header>
      <table class="live-table">
        <tbody>
          {ordered.slice(0, rows).map((d) => (
            <tr key={d.device_id} data-device-row={d.device_id}>
              <td>
                <HealthMark state={d.state} label={t(`health.${d.state}`)} />
              </td>
              <td>
                {d.device_id}
                <div class="sub">{typeName(center, d.type_code)}</div>
              </td>
              <td class="num time">{d.last_seen ? fmt.age(d.last_seen, now) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export type Rotation = 'province' | 'sector' | null;

/** The wall screen: one province or sector at a time, in large type, turning every `everyS` seconds. */
export function Kiosk({ rotate, everyS, province, sector }: { rotate: Rotation; everyS: number; province: string | null; sector: Sector | null }) {
  const center = useCenter();
  const { t, fmt, live } = center;
  useLive(live);
  const now = useNow(1000);
  const fleet = useFleet(null);
  const kpis = useKpis(null);
  const typeOf = useMemo(() => new Map(fleet.devices.map((d) => [d.device_id, d.type_code])), [fleet.devices]);

  const provincesWithDevices = useMemo(() => {
    const codes = new Set(fleet.devices.map((d) => d.province));
    const ordered = center.catalog.provinces.map((p) => p.code).filter((c) => codes.has(c));
    return ordered.length ? ordered : center.catalog.provinces.map((p) => p.code);
  }, [fleet.devices, center.catalog.provinces]);
  const stops: (string | null)[] = rotate === 'province' ? provincesWithDevices : rotate === 'sector' ? [...SECTORS] : [null];
  const [index, setIndex] = useState(0);
  const [turnedAt, setTurnedAt] = useState(Date.now());
  useEffect(() => {
    if (stops.length <= 1) return undefined;
    const timer = window.setInterval(() => {
      setIndex((i) => (i + 1) % stops.length);
      setTurnedAt(Date.now());
    }, everyS * 1000);
    return () => window.clearInterval(timer);
  }, [stops.length, everyS]);
  const stop = stops[index % Math.max(1, stops.length)] ?? null;
  const focusProvince = rotate === 'province' ? stop : province;
  const focusSector = (rotate === 'sector' ? stop : sector) as Sector | null;
  const rows = (kpis.data ?? []).filter((r) => (!focusProvince || r.province === focusProvince) && (!focusSector || r.sector === focusSector));
  const title = focusProvince ? provinceName(center, focusProvince) : focusSector ? t(`sector.${focusSector}`) : t('kiosk.all');
  const left = Math.max(0, Math.ceil(everyS - (now - turnedAt) / 1000));

  return (
    <main class="kiosk-main" data-kiosk-focus={stop ?? ''}>
      <div class="kiosk-focus">
        <h2 class="kiosk-title">{title}</h2>
        {stops.length > 1 && (
          <span class="kiosk-next">
            {t('kiosk.rotating', { s: fmt.integer(left) })} · {index + 1}/{stops.length}
          </span>
        )}
      </div>
      <div class="kiosk-grid">
        <section class="panel map-panel">
          <MapView
            devices={fleet.devices.filter((d) => !focusProvince || d.province === focusProvince)}
            focus={focusProvince}
            sector={focusSector}
            busPositions={fleet.busPositions}
          />
        </section>
        <div class="kiosk-middle">
          <SectorTiles rows={rows} sectors={focusSector ? [focusSector] : SECTORS} />
          <TotalsStrip province={focusProvince} sector={focusSector} refreshMs={60_000} />
          <AlarmFeed province={focusProvince} sector={focusSector} limit={7} readOnly />
        </div>
        <div class="kiosk-side">
          <LiveFeed province={focusProvince} sector={focusSector} typeOf={typeOf} rows={8} />
          {focusSector && !focusProvince ? (
            <section class="panel">
              <ProvinceTable rows={rows} selected={null} onSelect={() => undefined} />
            </section>
          ) : (
            <DeviceList devices={fleet.devices.filter((d) => (!focusProvince || d.province === focusProvince) && (!focusSector || d.sector === focusSector))} rows={12} />
          )}
        </div>
      </div>
    </main>
  );
}
