// The newest readings as the stream brings them.

import { provinceName, useCenter, useLive } from '../center';
import { metricLabel, unitSymbol } from '../i18n';

export function LiveFeed({
  province,
  sector,
  typeOf,
  rows = 12,
}: {
  province: string | null;
  sector: string | null;
  typeOf: Map<string, string>;
  rows?: number;
}) {
  const center = useCenter();
  const { live, t, fmt, lang, catalog } = center;
  useLive(live);
  const readings = live.recent.filter((r) => (!province || r.province === province) && (!sector || r.sector === sector)).slice(0, rows);
  return (
    <section class="panel live" aria-label={t('live.title')}>
      <header class="panel-head">
        <h2>{t('live.title')}</h2>
      </header>
      {!readings.length && <p class="empty">{t('live.waiting')}</p>}
      <table class="live-table">
        <tbody>
          {readings.map((r, i) => {
            const unit = unitOf(catalog.types, typeOf.get(r.device_id), r.metric);
            return (
              <tr key={`${r.device_id}/${r.metric}/${r.ts}/${i}`} data-reading={`${r.device_id}/${r.metric}`} data-value={r.value}>
                <td class="time">{fmt.time(r.ts)}</td>
                <td>
                  <a href={`#/device/${encodeURIComponent(r.device_id)}`}>{r.device_id}</a>
                  <div class="sub">{provinceName(center, r.province)}</div>
                </td>
                <td>{metricLabel(lang, r.metric)}</td>
                <td class="num value">
                  {fmt.number(r.value)} <span class="unit">{unitSymbol(lang, unit)}</span>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

// A reading event names no type: the device's type when known, else the first type that has the metric.
function unitOf(types: Map<string, { metrics: { name: string; unit: string }[] }>, typeCode: string | undefined, metric: string): string | undefined {
  const own = typeCode ? types.get(typeCode)?.metrics.find((m) => m.name === metric) : undefined;
  if (own) return own.unit;
  for (const type of types.values()) {
    const found = type.metrics.find((m) => m.name === metric);
    if (found) return found.unit;
  }
  return undefined;
}
