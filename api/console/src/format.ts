// Numbers, dates and ages for the chosen language and time zone (Asia/Ho_Chi_Minh unless the user picks another).

import type { Lang } from './i18n';

export const DEFAULT_TIME_ZONE = 'Asia/Ho_Chi_Minh';
const TZ_KEY = 'ioc.tz';

export function initialTimeZone(): string {
  const stored = localStorage.getItem(TZ_KEY);
  if (stored && isTimeZone(stored)) return stored;
  return DEFAULT_TIME_ZONE;
}

export function rememberTimeZone(zone: string): void {
  localStorage.setItem(TZ_KEY, zone);
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

const LOCALES: Record<Lang, string> = { vi: 'vi-VN', en: 'en-GB' };

export interface Formats {
  lang: Lang;
  locale: string;
  timeZone: string;
  number(value: number | null | undefined, digits?: number): string;
  integer(value: number): string;
  time(iso: string | number | Date): string;
  dateTime(iso: string | number | Date): string;
  shortDateTime(iso: string | number | Date): string;
  age(iso: string | number | Date, now?: number): string;
  duration(seconds: number): string;
  clock(now: Date): string;
  shortClock(now: Date): string;
  zoneLabel(): string;
}

export function formats(lang: Lang, timeZone: string): Formats {
  const locale = LOCALES[lang];
  const numberCache = new Map<number, Intl.NumberFormat>();
  const numberWith = (digits: number) => {
    let format = numberCache.get(digits);
    if (!format) {
      format = new Intl.NumberFormat(locale, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
      numberCache.set(digits, format);
    }
    return format;
  };
  const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const time = new Intl.DateTimeFormat(locale, { timeZone, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const dateTime = new Intl.DateTimeFormat(locale, {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  });
  const shortDateTime = new Intl.DateTimeFormat(locale, {
    timeZone,
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  });
  const clock = new Intl.DateTimeFormat(locale, {
    timeZone,
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  });
  const shortClock = new Intl.DateTimeFormat(locale, {
    timeZone,
    day: '2-digit',
    month: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  });
  const relative = new Intl.RelativeTimeFormat(locale, { numeric: 'auto', style: 'short' });
  const toDate = (value: string | number | Date) => (value instanceof Date ? value : new Date(value));
  const zoneName = new Intl.DateTimeFormat(locale, { timeZone, timeZoneName: 'shortOffset' });
  return {
    lang,
    locale,
    timeZone,
    number(value, digits) {
      if (value === null || value === undefined || !Number.isFinite(value)) return '—';
      const places = digits ?? (Math.abs(value) >= 1000 ? 0 : Math.abs(value) >= 100 ? 1 : Math.abs(value) >= 10 ? 2 : 3);
      return numberWith(places).format(value);
    },
    integer: (value) => integer.format(value),
    time: (value) => time.format(toDate(value)),
    dateTime: (value) => dateTime.format(toDate(value)),
    shortDateTime: (value) => shortDateTime.format(toDate(value)),
    age(value, now = Date.now()) {
      const seconds = Math.round((toDate(value).getTime() - now) / 1000);
      const abs = Math.abs(seconds);
      if (abs < 60) return relative.format(seconds, 'second');
      if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
      if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
      return relative.format(Math.round(seconds / 86400), 'day');
    },
    duration(seconds) {
      const unit =
        seconds % 86400 === 0 ? 'day' : seconds % 3600 === 0 ? 'hour' : seconds % 60 === 0 ? 'minute' : 'second';
      const size = { day: 86400, hour: 3600, minute: 60, second: 1 }[unit];
      return new Intl.NumberFormat(locale, { style: 'unit', unit, unitDisplay: 'long' }).format(seconds / size);
    },
    clock: (now) => clock.format(now),
    shortClock: (now) => shortClock.format(now),
    zoneLabel() {
      const part = zoneName.formatToParts(new Date()).find((p) => p.type === 'timeZoneName');
      return part ? part.value : timeZone;
    },
  };
}
