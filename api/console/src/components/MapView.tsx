// A plain coordinate map of Viet Nam's 34 provinces, drawn from their centres (no tile server, no outlines: no
// package on the npm registry carries the post-July-2025 province boundaries). Each device sits at its province's
// centre with a small offset derived from its id; buses sit at their latest position.

import { useMemo } from 'preact/hooks';

import { provinceName, typeName, useCenter, useLive } from '../center';
import type { DeviceHealth, HealthState } from '../types';
import { HEALTH_STATES } from '../types';
import { HEALTH_COLOURS, HealthMark, healthPath } from './marks';

// The frame: longitudes 101.6–110.4 E, latitudes 8.0–23.8 N, equirectangular with the x scale of latitude 16°.
const LON0 = 101.6;
const LON1 = 110.4;
const LAT0 = 8.0;
const LAT1 = 23.8;
const KX = 100 * Math.cos((16 * Math.PI) / 180);
const KY = 100;
const WIDTH = (LON1 - LON0) * KX;
const HEIGHT = (LAT1 - LAT0) * KY;
const MARKERS_MAX = 4000;

export function project(lat: number, lon: number): [number, number] {
  return [(lon - LON0) * KX, (LAT1 - lat) * KY];
}

function hash(text: string): number {
  // FNV-1a, 32 bits: the same id always lands on the same spot.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface MapProps {
  devices: DeviceHealth[];
  focus: string | null; // a province code to zoom to
  sector: string | null;
  onDevice?: (deviceId: string) => void;
  onProvince?: (code: string) => void;
  busPositions: Map<string, [number, number]>;
}

export function MapView({ devices, focus, sector, onDevice, onProvince, busPositions }: MapProps) {
  const center = useCenter();
  const { t, catalog, live } = center;
  useLive(live);

  const perProvince = useMemo(() => {
    const counts = new Map<string, number>();
    for (const d of devices) counts.set(d.province, (counts.get(d.province) ?? 0) + 1);
    return counts;
  }, [devices]);

  const shown = devices.filter((d) => !sector || d.sector === sector);
  const markers = shown.slice(0, MARKERS_MAX).map((device) => {
    const province = catalog.provinceByCode.get(device.province);
    let x: number;
    let y: number;
    let isBus = false;
    const bus = busPositions.get(device.device_id);
    const liveBus = live.latest.get(device.device_id);
    const liveLat = liveBus?.get('latitude')?.value;
    const liveLon = liveBus?.get('longitude')?.value;
    if (liveLat !== undefined && liveLon !== undefined) {
      [x, y] = project(liveLat, liveLon);
      isBus = true;
    } else if (bus) {
      [x, y] = project(bus[0], bus[1]);
      isBus = true;
    } else if (province?.center) {
      const [cx, cy] = project(province.center[0], province.center[1]);
      const h = hash(device.device_id);
      const spread = 8 + 3 * Math.sqrt(perProvince.get(device.province) ?? 1);
      const angle = ((h & 0xffff) / 0xffff) * 2 * Math.PI;
      const radius = 6 + ((h >>> 16) / 0xffff) * spread;
      x = cx + radius * Math.cos(angle);
      y = cy + radius * Math.sin(angle);
    } else {
      return null;
    }
    // A reading just now counts as a sign of life before the next health poll says so.
    const seen = live.lastSeen.get(device.device_id);
    const state: HealthState = seen && Date.now() - seen < 2 * device.report_interval_s * 1000 ? 'online' : device.state;
    return { device, x, y, isBus, state };
  });

  const counts: Record<HealthState, number> = { online: 0, silent: 0, offline: 0, unknown: 0 };
  for (const marker of markers) if (marker) counts[marker.state] += 1;

  let viewBox = `0 0 ${WIDTH.toFixed(0)} ${HEIGHT.toFixed(0)}`;
  const focused = focus ? catalog.provinceByCode.get(focus) : undefined;
  if (focused?.center) {
    const [fx, fy] = project(focused.center[0], focused.center[1]);
    // Tall, like the country and like the panels it is drawn in.
    const w = 260;
    const h = 520;
    viewBox = `${(fx - w / 2).toFixed(0)} ${(fy - h / 2).toFixed(0)} ${w} ${h}`;
  }
  const zoomed = Boolean(focused?.center);
  const r = zoomed ? 5 : 14;

  const graticule = [];
  for (let lon = 102; lon <= 110; lon += 2) {
    const [x] = project(LAT0, lon);
    graticule.push(<line key={`lon${lon}`} x1={x} y1={0} x2={x} y2={HEIGHT} class="grid" />);
    graticule.push(<text key={`lont${lon}`} x={x + 3} y={HEIGHT - 6} class="grid-label">{`${lon}°E`}</text>);
  }
  for (let lat = 10; lat <= 22; lat += 2) {
    const [, y] = project(lat, LON0);
    graticule.push(<line key={`lat${lat}`} x1={0} y1={y} x2={WIDTH} y2={y} class="grid" />);
    graticule.push(<text key={`latt${lat}`} x={4} y={y - 3} class="grid-label">{`${lat}°N`}</text>);
  }

  return (
    <div class="map-wrap">
      <svg class={`map${zoomed ? ' zoomed' : ''}`} viewBox={viewBox} preserveAspectRatio="xMidYMid meet" role="img" aria-label={t('map.title')}>
        <rect x={-2000} y={-2000} width={WIDTH + 4000} height={HEIGHT + 4000} class="sea" />
        {graticule}
        {catalog.provinces.map((p) => {
          if (!p.center) return null;
          const [x, y] = project(p.center[0], p.center[1]);
          const active = focus === p.code;
          const dim = focus !== null && !active;
          const empty = !perProvince.has(p.code);
          return (
            <g key={p.code} class={`province${active ? ' active' : ''}${dim ? ' dim' : ''}${empty ? ' empty' : ''}`} data-province={p.code} onClick={() => onProvince?.(p.code)}>
              <circle cx={x} cy={y} r={zoomed ? 3 : 4} class="province-dot" />
              <text x={x + (zoomed ? 5 : 7)} y={y - (zoomed ? 4 : 6)} class="province-label">
                {provinceName(center, p.code)}
              </text>
            </g>
          );
        })}
        {markers.map((m) =>
          m ? (
            <g
              key={m.device.device_id}
              class={`device state-${m.state}${m.isBus ? ' bus' : ''}`}
              transform={`translate(${m.x.toFixed(1)} ${m.y.toFixed(1)})`}
              data-device={m.device.device_id}
              data-state={m.state}
              onClick={() => onDevice?.(m.device.device_id)}
            >
              <title>{`${m.device.device_id} · ${typeName(center, m.device.type_code)} · ${t(`health.${m.state}`)}`}</title>
              <path
                d={healthPath(m.state, m.isBus ? r * 1.2 : r)}
                fill={m.state === 'unknown' ? 'rgba(0,0,0,0.15)' : HEALTH_COLOURS[m.state]}
                stroke={m.state === 'offline' ? '#fff' : m.state === 'unknown' ? HEALTH_COLOURS.unknown : '#0b1e2d'}
                stroke-width={m.state === 'unknown' ? 1.5 : 0.8}
              />
              {m.isBus && (
                <text y={r * 0.45} class="bus-glyph" text-anchor="middle" font-size={r * 1.3}>
                  B
                </text>
              )}
            </g>
          ) : null,
        )}
      </svg>
      <div class="map-legend" aria-label={t('map.legend')}>
        {HEALTH_STATES.map((state) => (
          <span key={state} class="legend-item" data-legend={state}>
            <HealthMark state={state} label={`${t(`health.${state}`)}: ${center.fmt.integer(counts[state])}`} />
          </span>
        ))}
        <span class="legend-item">
          <span class="bus-key">B</span> {t('map.bus')}
        </span>
      </div>
      <div class="map-note">
        {shown.length > MARKERS_MAX ? `${t('map.showing', { n: MARKERS_MAX, total: shown.length })} · ` : ''}
        {t('map.note')}
      </div>
    </div>
  );
}
