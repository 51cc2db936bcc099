// The alarm feed: most severe first, then the longest standing; acknowledge, clear, comment and assign for
// operators (admins may also give an alarm to someone else by username). The bodies carry no actor: the center takes
// it from the token. A refused change is said in the feed, in the operator's language, with the center's reason.

import { useState } from 'preact/hooks';

import { ApiError } from '../api';
import { canOperate, provinceName, useCenter, useLive, useNow, usePolled } from '../center';
import type { Key, Translate } from '../i18n';
import type { Alarm, AlarmStatus, Me, Severity, UserSummary } from '../types';
import { SEVERITIES } from '../types';
import { SeverityMark } from './marks';

type StatusFilter = 'open' | AlarmStatus;
const STATUS_FILTERS: readonly StatusFilter[] = ['open', 'active', 'acknowledged', 'cleared'];
const FEED_LIMIT = 200;
const USERS_REFRESH_MS = 300_000; // an admin's list of possible assignees is loaded again every 5 minutes
// What a refusal means here; the center's own reason follows it.
const REFUSALS: Record<number, Key> = {
  403: 'alarms.error403',
  404: 'alarms.error404',
  409: 'alarms.error409',
  422: 'alarms.error422',
};

type Action = 'ack' | 'clear' | 'comment' | 'assign';
/** Runs a change of one alarm; resolves to false when the center refused it (the feed says why). */
type Act = (alarm: Alarm, action: Action, body: Record<string, unknown>) => Promise<boolean>;

/** A refused change in words: what the status means here, then the center's own reason. */
export function refusal(t: Translate, alarm: Alarm, failure: unknown): string {
  if (!(failure instanceof ApiError)) return t('alarms.failed', { id: alarm.id, why: String(failure) });
  const meaning = REFUSALS[failure.status];
  const why = meaning ? `${t(meaning)} (${failure.message})` : failure.message;
  return t('alarms.failed', { id: alarm.id, why });
}

/** Someone who can take the alarm: an enabled operator or admin whose scope includes its province and sector. */
function canTake(user: UserSummary, alarm: Alarm): boolean {
  return (
    !user.disabled &&
    user.role !== 'viewer' &&
    (user.provinces === null || user.provinces.includes(alarm.province)) &&
    (user.sectors === null || user.sectors.includes(alarm.sector))
  );
}

function isPerson(me: Me): boolean {
  return me.kind === 'user';
}

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
  const [mine, setMine] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const operate = canOperate(me) && !readOnly;
  // Only a person can be given an alarm (an API key cannot), and a viewer never is.
  const offerMine = operate && isPerson(me);
  const assignedTo = offerMine && mine ? 'me' : undefined;
  const { data, error, reload } = usePolled(
    async () => {
      const params = {
        province,
        sector,
        severity: severity || undefined,
        device_id: deviceId,
        assigned_to: assignedTo,
        limit: FEED_LIMIT,
      };
      const statuses: AlarmStatus[] = status === 'open' ? ['active', 'acknowledged'] : [status];
      const lists = await Promise.all(statuses.map((s) => api.get<Alarm[]>('/alarms', { ...params, status: s })));
      return lists.flat();
    },
    [province, sector, severity, status, deviceId, assignedTo],
    { everyMs: 30_000, trigger: live.alarmEvents },
  );
  // GET /users is for admins; an operator gives an alarm only to themself here.
  const listUsers = operate && me.role === 'admin';
  const users = usePolled(async () => (listUsers ? api.get<UserSummary[]>('/users') : []), [listUsers], {
    everyMs: listUsers ? USERS_REFRESH_MS : undefined,
  });
  const alarms = sortAlarms((data ?? []).filter((a) => !sector || a.sector === sector));
  const shown = limit ? alarms.slice(0, limit) : alarms;

  const act: Act = async (alarm, action, body) => {
    setMessage(null);
    try {
      await api.post(`/alarms/${alarm.id}/${action}`, body);
      reload();
      return true;
    } catch (failure) {
      setMessage(refusal(t, alarm, failure));
      reload(); // a 404 or 409 means the alarm is not what the screen shows: show what it is now
      return false;
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
            {offerMine && (
              <label class="check">
                <input type="checkbox" checked={mine} onChange={(e) => setMine((e.target as HTMLInputElement).checked)} data-filter="mine" />
                {t('alarms.mine')}
              </label>
            )}
          </div>
        )}
      </header>
      <p class="hint">{t('alarms.sorted')}</p>
      {error && <p class="error">{t('error.generic', { m: error.message })}</p>}
      {message && (
        <p class="error" role="alert" data-alarm-error>
          {message}
        </p>
      )}
      {data && !shown.length && <p class="empty">{t('alarms.none')}</p>}
      <ol class="alarm-list">
        {shown.map((alarm) => (
          <AlarmRow
            key={alarm.id}
            alarm={alarm}
            operate={operate}
            act={act}
            showDevice={!deviceId}
            users={listUsers ? (users.data ?? []) : null}
          />
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
  users,
}: {
  alarm: Alarm;
  operate: boolean;
  act: Act;
  showDevice: boolean;
  users: UserSummary[] | null; // who an admin may give it to; null: the caller may not list users
}) {
  const center = useCenter();
  const { t, fmt, me } = center;
  const now = useNow(15_000);
  const [editing, setEditing] = useState<'clear' | 'comment' | 'assign' | null>(null);
  const [note, setNote] = useState('');
  const [assignee, setAssignee] = useState('');
  const [busy, setBusy] = useState(false);
  const run = async (action: Action, body: Record<string, unknown> = {}) => {
    setBusy(true);
    try {
      // A refused change keeps its form open, so that a mistyped username can be corrected.
      if (await act(alarm, action, body)) {
        setEditing(null);
        setNote('');
        setAssignee('');
      }
    } finally {
      setBusy(false);
    }
  };
  const open = alarm.status !== 'cleared';
  const person = isPerson(me);
  const mineNow = person && alarm.assigned_to === me.name;
  const listId = `alarm-${alarm.id}-assignees`;
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
          {alarm.assigned_to ? (
            <span
              class={`assignee${mineNow ? ' mine' : ''}`}
              data-assignee={alarm.assigned_to}
              title={alarm.assigned_at ? fmt.dateTime(alarm.assigned_at) : undefined}
            >
              {t(mineNow ? 'alarms.assignedToYou' : 'alarms.assignedTo', { who: alarm.assigned_to })}
            </span>
          ) : (
            open && (
              <span class="assignee none" data-assignee="">
                {t('alarms.unassigned')}
              </span>
            )
          )}
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
            {open && person && !mineNow && (
              <button type="button" data-action="assign-me" disabled={busy} onClick={() => void run('assign', { assignee: me.name })}>
                {t('alarms.assignMe')}
              </button>
            )}
            {open && users !== null && (
              <button
                type="button"
                data-action="assign"
                disabled={busy}
                title={t('alarms.assignee')}
                onClick={() => setEditing(editing === 'assign' ? null : 'assign')}
              >
                {t('alarms.assignOther')}
              </button>
            )}
            {open && alarm.assigned_to && (
              <button type="button" class="quiet" data-action="unassign" disabled={busy} onClick={() => void run('assign', { assignee: null })}>
                {t('alarms.unassign')}
              </button>
            )}
          </div>
        )}
        {operate && editing === 'assign' && (
          <form
            class="alarm-note"
            onSubmit={(e) => {
              e.preventDefault();
              if (assignee.trim()) void run('assign', { assignee: assignee.trim() });
            }}
          >
            <label>
              <span class="sr">{t('alarms.assignee')}</span>
              <input
                type="text"
                maxLength={64}
                list={listId}
                autoComplete="off"
                placeholder={t('alarms.assignee')}
                value={assignee}
                onInput={(e) => setAssignee((e.target as HTMLInputElement).value)}
                required
                data-assignee-input
              />
            </label>
            {/* Suggestions only: the center decides who can take it (422 with its reason otherwise). */}
            <datalist id={listId}>
              {(users ?? [])
                .filter((u) => canTake(u, alarm))
                .map((u) => (
                  <option key={u.username} value={u.username}>
                    {u.display_name}
                  </option>
                ))}
            </datalist>
            <button type="submit" disabled={busy} data-action="assign-send">
              {t('alarms.assign')}
            </button>
            <button type="button" class="quiet" onClick={() => setEditing(null)}>
              {t('alarms.cancel')}
            </button>
          </form>
        )}
        {operate && (editing === 'clear' || editing === 'comment') && (
          <form
            class="alarm-note"
            onSubmit={(e) => {
              e.preventDefault();
              if (editing === 'comment' && !note.trim()) return;
              void run(editing, note.trim() ? { note: note.trim() } : {});
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
