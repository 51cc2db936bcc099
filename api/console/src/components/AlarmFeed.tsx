// The alarm feed: most severe first, then the longest standing; acknowledge, clear and comment for operators.
// The bodies carry no actor: the center takes it from the token.

import { useState } from 'preact/hooks';

import { ApiError } from '../api';
import { canOperate, provinceName, useCenter, useLive, useNow, usePolled } from '../center';
import type { Alarm, AlarmStatus, Severity } from '../types';
import { SEVERITIES } from '../types';
import { SeverityMark } from './marks';

type StatusFilter = 'open' | AlarmStatus;
const STATUS_FILTERS: readonly StatusFilter[] = ['open', 'active', 'acknowledged', 'cleared'];
const FEED_LIMIT = 200;

export function sortAlarms(alarms: Alarm[]): Alarm[] {
  const rank = (s: Severity) => SEVERITIES.indexOf(s);
  return [...alarms].sort(
    (a, b) => rank(a.severity) - rank(b.severity) || Date.parse(a.raised_at) - Date.parse(b.raised_at) || a.id - b.id,
  );
}

export function AlarmFeed({
  province,
  sector,
  deviceId,
  limit,
  readOnly,
}: {
  province: string | null;
  sector: string | null;
  deviceId?: string;
  limit?: number;
  readOnly?: boolean;
}) {
  const center = useCenter();
  const { api, t, live, me } = center;
  useLive(live);
  const [status, setStatus] = useState<StatusFilter>('open');
  const [severity, setSeverity] = useState<Severity | ''>('');
  const [message, setMessage] = useState<string | null>(null);
  const { data, error, reload } = usePolled(
    async () => {
      const params = { province, sector, severity: severity || undefined, device_id: deviceId, limit: FEED_LIMIT };
      const statuses: AlarmStatus[] = status === 'open' ? ['active', 'acknowledged'] : [status];
      const lists = await Promise.all(statuses.map((s) => api.get<Alarm[]>('/alarms', { ...params, status: s })));
      return lists.flat();
    },
    [province, sector, severity, status, deviceId],
    { everyMs: 30_000, trigger: live.alarmEvents },
  );
  const alarms = sortAlarms((data ?? []).filter((a) => !sector || a.sector === sector));
  const shown = limit ? alarms.slice(0, limit) : alarms;
  const operate = canOperate(me) && !readOnly;

  const act = async (alarm: Alarm, action: 'ack' | 'clear' | 'comment', note?: string) => {
    setMessage(null);
    try {
      await api.post(`/alarms/${alarm.id}/${action}`, note ? { note } : action === 'comment' ? { note: '' } : {});
      reload();
    } catch (failure) {
      setMessage(failure instanceof ApiError ? failure.message : String(failure));
    }
  };

  return (
    <section class="panel alarms" aria-label={t('alarms.title')}>
      <header class="panel-head">
        <h2>
          {t('alarms.title')} <span class="count">{center.fmt.integer(alarms.length)}</span>
        </h2>
        {!readOnly && (
          <div class="filters">
            <label>
              <span class="sr">{t('alarms.status')}</span>
              <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value as StatusFilter)} data-filter="status">
                {STATUS_FILTERS.map((s) => (
                  <option key={s} value={s}>
                    {t(`status.${s}`)}
                  </option>
                ))}
              </select>
            </label>
            <label>
              <span class="sr">{t('alarms.severity')}</span>
              <select value={severity} onChange={(e) => setSeverity((e.target as HTMLSelectElement).value as Severity | '')} data-filter="severity">
                <option value="">{t('alarms.allSeverities')}</option>
                {SEVERITIES.map((s) => (
                  <option key={s} value={s}>
                    {t(`severity.${s}`)}
                  </option>
                ))}
              </select>
            </label>
          </div>
        )}
      </header>
      <p class="hint">{t('alarms.sorted')}</p>
      {error && <p class="error">{t('error.generic', { m: error.message })}</p>}
      {message && (
        <p class="error" role="alert">
          {message}
        </p>
      )}
      {data && !shown.length && <p class="empty">{t('alarms.none')}</p>}
      <ol class="alarm-list">
        {shown.map((alarm) => (
          <AlarmRow key={alarm.id} alarm={alarm} operate={operate} act={act} showDevice={!deviceId} />
        ))}
      </ol>
    </section>
  );
}

function AlarmRow({
  alarm,
  operate,
  act,
  showDevice,
}: {
  alarm: Alarm;
  operate: boolean;
  act: (alarm: Alarm, action: 'ack' | 'clear' | 'comment', note?: string) => Promise<void>;
  showDevice: boolean;
}) {
  const center = useCenter();
  const { t, fmt } = center;
  const now = useNow(15_000);
  const [editing, setEditing] = useState<'clear' | 'comment' | null>(null);
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const run = async (action: 'ack' | 'clear' | 'comment', text?: string) => {
    setBusy(true);
    try {
      await act(alarm, action, text);
      setEditing(null);
      setNote('');
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class={`alarm sev-${alarm.severity} st-${alarm.status}`} data-alarm-id={alarm.id} data-status={alarm.status}>
      <div class="alarm-body">
        <div class="alarm-title">
          <SeverityMark severity={alarm.severity} label={t(`severity.${alarm.severity}`)} size={18} />
          <span class="alarm-msg">{alarm.message}</span>
        </div>
        <div class="alarm-meta">
          {showDevice && (
            <a href={`#/device/${encodeURIComponent(alarm.device_id)}`} class="device-link">
              {alarm.device_id}
            </a>
          )}
          <span>{provinceName(center, alarm.province)}</span>
          <span title={fmt.dateTime(alarm.raised_at)}>{fmt.age(alarm.raised_at, now)}</span>
          {alarm.occurrences > 1 && <span>{t('alarms.times', { n: fmt.integer(alarm.occurrences) })}</span>}
          <span class={`status-word st-${alarm.status}`}>{t(`status.${alarm.status}`)}</span>
          {alarm.acknowledged_by && <span>{t('alarms.ackedBy', { who: alarm.acknowledged_by })}</span>}
          {alarm.cleared_by && <span>{t('alarms.clearedBy', { who: alarm.cleared_by })}</span>}
        </div>
        {operate && (
          <div class="alarm-actions">
            {alarm.status === 'active' && (
              <button type="button" data-action="ack" disabled={busy} onClick={() => void run('ack')}>
                {t('alarms.ack')}
              </button>
            )}
            {alarm.status !== 'cleared' && (
              <button type="button" data-action="clear" disabled={busy} onClick={() => setEditing(editing === 'clear' ? null : 'clear')}>
                {t('alarms.clear')}
              </button>
            )}
            <button type="button" data-action="comment" disabled={busy} onClick={() => setEditing(editing === 'comment' ? null : 'comment')}>
              {t('alarms.comment')}
            </button>
          </div>
        )}
        {operate && editing && (
          <form
            class="alarm-note"
            onSubmit={(e) => {
              e.preventDefault();
              if (editing === 'comment' && !note.trim()) return;
              void run(editing, note.trim() || undefined);
            }}
          >
            <label>
              <span class="sr">{t('alarms.note')}</span>
              <input
                type="text"
                maxLength={2000}
                placeholder={t('alarms.note')}
                value={note}
                onInput={(e) => setNote((e.target as HTMLInputElement).value)}
                required={editing === 'comment'}
              />
            </label>
            <button type="submit" disabled={busy} data-action={`${editing}-send`}>
              {editing === 'clear' ? t('alarms.clear') : t('alarms.send')}
            </button>
            <button type="button" class="quiet" onClick={() => setEditing(null)}>
              {t('alarms.cancel')}
            </button>
          </form>
        )}
      </div>
    </li>
  );
}
