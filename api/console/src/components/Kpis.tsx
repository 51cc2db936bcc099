// KPI tiles per sector (GET /kpis), a table per province, and a few cross-device totals (GET /totals).

import { provinceName, useCenter, usePolled } from '../center';
import type { Key } from '../i18n';
import { unitSymbol } from '../i18n';
import type { Sector, SectorKpi, Severity, Total } from '../types';
import { SECTORS, SEVERITIES } from '../types';
import { HealthMark, SeverityMark } from './marks';

interface Sum {
  total: number;
  online: number;
  silent: number;
  offline: number;
  unknown: number;
  alarms: Record<Severity, number>;
  unacknowledged: number;
  rpm: number;
}

function emptySum(): Sum {
  return {
    total: 0,
    online: 0,
    silent: 0,
    offline: 0,
    unknown: 0,
    alarms: { critical: 0, major: 0, minor: 0, warning: 0 },
    unacknowledged: 0,
    rpm: 0,
  };
}

function add(sum: Sum, row: SectorKpi): void {
  sum.total += row.devices.total;
  sum.online += row.devices.online;
  sum.silent += row.devices.silent;
  sum.offline += row.devices.offline;
  sum.unknown += row.devices.unknown;
  for (const s of SEVERITIES) sum.alarms[s] += row.open_alarms[s] ?? 0;
  sum.unacknowledged += row.open_alarms.unacknowledged ?? 0;
  sum.rpm += row.readings_per_minute;
}

export function SectorTiles({ rows, sectors = SECTORS }: { rows: SectorKpi[]; sectors?: readonly Sector[] }) {
  const { t, fmt } = useCenter();
  const bySector = new Map<Sector, Sum>();
  for (const sector of sectors) bySector.set(sector, emptySum());
  for (const row of rows) {
    const sum = bySector.get(row.sector);
    if (sum) add(sum, row);
  }
  return (
    <div class="tiles">
      {sectors.map((sector) => {
        const sum = bySector.get(sector) ?? emptySum();
        const open = SEVERITIES.reduce((n, s) => n + sum.alarms[s], 0);
        return (
          <section key={sector} class={`tile sector-${sector}`} data-sector={sector}>
            <h3>{t(`sector.${sector}`)}</h3>
            <div class="tile-main">
              <span class="big">{fmt.integer(sum.online)}</span>
              <span class="of">/ {fmt.integer(sum.total)}</span>
              <span class="what">{t('kpi.online')}</span>
            </div>
            <div class="tile-row">
              <HealthMark state="silent" label={`${t('health.silent')} ${fmt.integer(sum.silent)}`} />
              <HealthMark state="offline" label={`${t('health.offline')} ${fmt.integer(sum.offline)}`} />
            </div>
            <div class="tile-row">
              <span class="what">{t('kpi.alarms')}:</span> <strong>{fmt.integer(open)}</strong>
              {SEVERITIES.filter((s) => sum.alarms[s] > 0).map((s) => (
                <SeverityMark key={s} severity={s} label={fmt.integer(sum.alarms[s])} />
              ))}
            </div>
            <div class="tile-row">
              <span class="what">{t('kpi.rpm')}:</span> <strong>{fmt.number(sum.rpm, 1)}</strong>
            </div>
          </section>
        );
      })}
    </div>
  );
}

export function ProvinceTable({
  rows,
  selected,
  onSelect,
}: {
  rows: SectorKpi[];
  selected: string | null;
  onSelect: (code: string | null) => void;
}) {
  const center = useCenter();
  const { t, fmt } = center;
  const byProvince = new Map<string, Sum>();
  for (const row of rows) {
    let sum = byProvince.get(row.province);
    if (!sum) {
      sum = emptySum();
      byProvince.set(row.province, sum);
    }
    add(sum, row);
  }
  const weight = (s: Sum) => s.alarms.critical * 1e6 + s.alarms.major * 1e4 + s.alarms.minor * 100 + s.alarms.warning;
  const ordered = [...byProvince.entries()]
    .filter(([, s]) => s.total > 0)
    .sort((a, b) => weight(b[1]) - weight(a[1]) || provinceName(center, a[0]).localeCompare(provinceName(center, b[0]), center.fmt.locale));
  if (!ordered.length) return <p class="empty">{t('kpi.none')}</p>;
  return (
    <table class="provinces">
      <thead>
        <tr>
          <th>{t('kpi.province')}</th>
          <th class="num">{t('kpi.devices')}</th>
          <th class="num">{t('health.silent')}</th>
          <th class="num">{t('health.offline')}</th>
          <th class="num">{t('kpi.alarms')}</th>
          <th class="num">{t('kpi.rpm')}</th>
        </tr>
      </thead>
      <tbody>
        {ordered.map(([code, s]) => (
          <tr
            key={code}
            class={selected === code ? 'selected' : ''}
            data-province-row={code}
            onClick={() => onSelect(selected === code ? null : code)}
          >
            <td>{provinceName(center, code)}</td>
            <td class="num">
              {fmt.integer(s.online)} / {fmt.integer(s.total)}
            </td>
            <td class="num">{s.silent ? <HealthMark state="silent" label={fmt.integer(s.silent)} /> : '0'}</td>
            <td class="num">{s.offline ? <HealthMark state="offline" label={fmt.integer(s.offline)} /> : '0'}</td>
            <td class="num">
              {SEVERITIES.filter((sev) => s.alarms[sev] > 0).map((sev) => (
                <SeverityMark key={sev} severity={sev} label={fmt.integer(s.alarms[sev])} />
              ))}
              {SEVERITIES.every((sev) => s.alarms[sev] === 0) && '0'}
            </td>
            <td class="num">{fmt.number(s.rpm, 1)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// The totals worth a glance on an operations wall: metric, how to combine the devices' values, label.
export const TOTALS: { metric: string; type?: string; combine: 'total' | 'maximum' | 'mean'; key: string; unit: string }[] = [
  { metric: 'active_power', type: 'smart_meter', combine: 'total', key: 'total.power', unit: 'kW' },
  { metric: 'ac_power', type: 'solar_inverter', combine: 'total', key: 'total.solar', unit: 'kW' },
  { metric: 'water_level', type: 'water_level_gauge', combine: 'maximum', key: 'total.water', unit: 'm' },
  { metric: 'salinity', type: 'salinity_sensor', combine: 'maximum', key: 'total.salinity', unit: 'g/L' },
  { metric: 'temperature', type: 'vaccine_fridge', combine: 'maximum', key: 'total.fridge', unit: 'Cel' },
  { metric: 'pm2_5', type: 'air_quality_monitor', combine: 'mean', key: 'total.pm25', unit: 'ug/m3' },
  { metric: 'vehicle_count', type: 'traffic_counter', combine: 'total', key: 'total.vehicles', unit: '{vehicle}' },
];

export function combineTotals(rows: Total[], combine: 'total' | 'maximum' | 'mean'): { value: number; devices: number } | null {
  const devices = rows.reduce((n, r) => n + r.devices, 0);
  if (!devices) return null;
  if (combine === 'total') return { value: rows.reduce((n, r) => n + r.total, 0), devices };
  if (combine === 'maximum') return { value: Math.max(...rows.map((r) => r.maximum)), devices };
  return { value: rows.reduce((n, r) => n + r.mean * r.devices, 0) / devices, devices };
}

export function TotalsStrip({ province, sector, refreshMs = 30_000 }: { province: string | null; sector: string | null; refreshMs?: number }) {
  const { api, t, fmt, lang } = useCenter();
  const wanted = TOTALS.filter((item) => !sector || SECTOR_OF_TYPE[item.type ?? ''] === sector);
  const { data } = usePolled(
    () =>
      Promise.all(
        wanted.map((item) =>
          api
            .get<Total[]>('/totals', { metric: item.metric, type: item.type, province })
            .then((rows) => combineTotals(rows, item.combine))
            .catch(() => null),
        ),
      ),
    [province, sector],
    { everyMs: refreshMs },
  );
  const shown = wanted.map((item, i) => ({ item, result: data?.[i] ?? null })).filter((x) => x.result !== null);
  if (!shown.length) return null;
  return (
    <div class="totals" aria-label={t('kpi.totals')}>
      {shown.map(({ item, result }) => (
        <div key={item.key} class="total" data-total={item.metric}>
          <div class="total-label">{t(item.key as Key)}</div>
          <div class="total-value">
            {fmt.number(result!.value)} <span class="unit">{unitSymbol(lang, item.unit)}</span>
          </div>
          <div class="total-devices">
            {result!.devices === 1 ? t('total.device') : t('total.devices', { n: fmt.integer(result!.devices) })}
          </div>
        </div>
      ))}
    </div>
  );
}

const SECTOR_OF_TYPE: Record<string, Sector> = {
  smart_meter: 'energy',
  solar_inverter: 'energy',
  water_level_gauge: 'agriculture',
  salinity_sensor: 'agriculture',
  vaccine_fridge: 'health',
  air_quality_monitor: 'health',
  traffic_counter: 'transport',
};
