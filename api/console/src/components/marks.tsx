// Shapes that carry a state together with its colour and its word: colour is never the only signal.

import type { HealthState, Severity } from '../types';

export const HEALTH_COLOURS: Record<HealthState, string> = {
  online: '#2f9e44',
  silent: '#f08c00',
  offline: '#e03131',
  unknown: '#868e96',
};

export const SEVERITY_COLOURS: Record<Severity, string> = {
  critical: '#e03131',
  major: '#f76707',
  minor: '#f59f00',
  warning: '#1c7ed6',
};

/** The path of a health state's shape, centred on (0, 0), about `r` in radius. */
export function healthPath(state: HealthState, r: number): string {
  switch (state) {
    case 'online': // circle
      return `M ${-r} 0 a ${r} ${r} 0 1 0 ${2 * r} 0 a ${r} ${r} 0 1 0 ${-2 * r} 0 Z`;
    case 'silent': // triangle
      return `M 0 ${-1.2 * r} L ${1.1 * r} ${0.9 * r} L ${-1.1 * r} ${0.9 * r} Z`;
    case 'offline': // square with a cross
      return `M ${-r} ${-r} H ${r} V ${r} H ${-r} Z M ${-r} ${-r} L ${r} ${r} M ${r} ${-r} L ${-r} ${r}`;
    default: // hollow diamond
      return `M 0 ${-1.3 * r} L ${1.3 * r} 0 L 0 ${1.3 * r} L ${-1.3 * r} 0 Z`;
  }
}

export function severityPath(severity: Severity, r: number): string {
  switch (severity) {
    case 'critical': {
      // octagon
      const a = r * 0.414;
      return `M ${-a} ${-r} H ${a} L ${r} ${-a} V ${a} L ${a} ${r} H ${-a} L ${-r} ${a} V ${-a} Z`;
    }
    case 'major':
      return `M 0 ${-1.2 * r} L ${1.1 * r} ${0.9 * r} L ${-1.1 * r} ${0.9 * r} Z`;
    case 'minor':
      return `M 0 ${-1.2 * r} L ${1.2 * r} 0 L 0 ${1.2 * r} L ${-1.2 * r} 0 Z`;
    default:
      return `M ${-r} 0 a ${r} ${r} 0 1 0 ${2 * r} 0 a ${r} ${r} 0 1 0 ${-2 * r} 0 Z`;
  }
}

const SEVERITY_GLYPHS: Record<Severity, string> = { critical: '!!', major: '!', minor: '·', warning: 'i' };

export function HealthMark({ state, label, size = 14 }: { state: HealthState; label?: string; size?: number }) {
  const r = size * 0.36;
  const hollow = state === 'unknown';
  return (
    <span class={`mark health-${state}`} data-health={state}>
      <svg width={size} height={size} viewBox={`${-size / 2} ${-size / 2} ${size} ${size}`} aria-hidden="true">
        <path
          d={healthPath(state, r)}
          fill={hollow ? 'none' : HEALTH_COLOURS[state]}
          stroke={state === 'offline' ? '#fff' : HEALTH_COLOURS[state]}
          stroke-width={state === 'offline' ? 1.2 : 1.6}
        />
        {state === 'offline' && <path d={healthPath('offline', r).split(' Z')[0] + ' Z'} fill="none" stroke={HEALTH_COLOURS.offline} stroke-width="1.2" />}
      </svg>
      {label !== undefined && <span class="mark-label">{label}</span>}
    </span>
  );
}

export function SeverityMark({ severity, label, size = 16 }: { severity: Severity; label?: string; size?: number }) {
  const r = size * 0.42;
  return (
    <span class={`mark severity-${severity}`} data-severity={severity}>
      <svg width={size} height={size} viewBox={`${-size / 2} ${-size / 2} ${size} ${size}`} aria-hidden="true">
        <path d={severityPath(severity, r)} fill={SEVERITY_COLOURS[severity]} />
        <text x="0" y={severity === 'major' ? r * 0.55 : r * 0.35} text-anchor="middle" font-size={r} fill="#fff" font-weight="700">
          {SEVERITY_GLYPHS[severity]}
        </text>
      </svg>
      {label !== undefined && <span class="mark-label">{label}</span>}
    </span>
  );
}
