// One metric over time with uPlot: raw readings as a line, rollups as their mean with a min–max band.

import 'uplot/dist/uPlot.min.css';

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

import type { Formats } from '../format';

export interface ChartData {
  xs: number[]; // epoch seconds
  ys: (number | null)[];
  lows?: (number | null)[];
  highs?: (number | null)[];
}

function timeFormatter(fmt: Formats, spanS: number): Intl.DateTimeFormat {
  const base: Intl.DateTimeFormatOptions = { timeZone: fmt.timeZone, hour12: false };
  if (spanS <= 2 * 3600) return new Intl.DateTimeFormat(fmt.locale, { ...base, hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (spanS <= 2 * 86400) return new Intl.DateTimeFormat(fmt.locale, { ...base, hour: '2-digit', minute: '2-digit' });
  if (spanS <= 14 * 86400) return new Intl.DateTimeFormat(fmt.locale, { ...base, day: '2-digit', month: '2-digit', hour: '2-digit' });
  return new Intl.DateTimeFormat(fmt.locale, { ...base, day: '2-digit', month: '2-digit' });
}

export function Chart({
  data,
  fmt,
  unit,
  label,
  spanS,
  height = 180,
  colour = '#4dabf7',
}: {
  data: ChartData;
  fmt: Formats;
  unit: string;
  label: string;
  spanS: number;
  height?: number;
  colour?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const banded = Boolean(data.lows && data.highs);

  // Build the plot again when what it looks like changes; feed it new data otherwise.
  useEffect(() => {
    const element = box.current;
    if (!element) return undefined;
    const xFormat = timeFormatter(fmt, spanS);
    const series: uPlot.Series[] = [
      { value: (_u, v) => (v === null ? '—' : fmt.dateTime(v * 1000)) },
      { label, stroke: colour, width: 2, value: (_u, v) => (v === null ? '—' : `${fmt.number(v)} ${unit}`), spanGaps: false },
    ];
    if (banded) {
      series.push(
        { label: 'min', stroke: 'rgba(77,171,247,0.35)', width: 1, value: (_u, v) => (v === null ? '—' : fmt.number(v)) },
        { label: 'max', stroke: 'rgba(77,171,247,0.35)', width: 1, value: (_u, v) => (v === null ? '—' : fmt.number(v)) },
      );
    }
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), fmt.timeZone),
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series,
      bands: banded ? [{ series: [3, 2], fill: 'rgba(77,171,247,0.15)' }] : [],
      axes: [
        {
          stroke: '#9fb3c8',
          grid: { stroke: 'rgba(159,179,200,0.15)' },
          ticks: { stroke: 'rgba(159,179,200,0.3)' },
          values: (_u, splits) => splits.map((s) => xFormat.format(new Date(s * 1000))),
        },
        {
          stroke: '#9fb3c8',
          grid: { stroke: 'rgba(159,179,200,0.15)' },
          ticks: { stroke: 'rgba(159,179,200,0.3)' },
          size: 60,
          values: (_u, splits) => splits.map((v) => fmt.number(v)),
        },
      ],
    };
    const columns: uPlot.AlignedData = banded
      ? [data.xs, data.ys, data.lows ?? [], data.highs ?? []]
      : [data.xs, data.ys];
    const chart = new uPlot(options, columns, element);
    plot.current = chart;
    const observer = new ResizeObserver(() => chart.setSize({ width: Math.max(200, element.clientWidth), height }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [fmt, unit, label, spanS, height, banded, colour]);

  useEffect(() => {
    const chart = plot.current;
    if (!chart) return;
    chart.setData(banded ? [data.xs, data.ys, data.lows ?? [], data.highs ?? []] : [data.xs, data.ys]);
  }, [data, banded]);

  return <div class="chart" ref={box} />;
}
