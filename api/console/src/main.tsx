// The console's entry: login, then the overview, a device page (#/device/ID) or the wall-screen kiosk
// (?kiosk=1&rotate=province|sector&every=20).

import './styles.css';

import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';

import { Api } from './api';
import type { Catalog, Center } from './center';
import { CenterContext, LiveData, useCenter, useNow } from './center';
import { DevicePage } from './components/DevicePage';
import { Login } from './components/Login';
import type { Rotation } from './components/Overview';
import { Kiosk, Overview } from './components/Overview';
import { browserTimeZone, DEFAULT_TIME_ZONE, formats, initialTimeZone, rememberTimeZone } from './format';
import type { Lang, Translate } from './i18n';
import { initialLang, rememberLang, translator } from './i18n';
import type { StreamState } from './stream';
import { LiveStream } from './stream';
import type { DeviceType, Me, Province, Sector } from './types';
import { SECTORS } from './types';

const query = new URLSearchParams(location.search);
const KIOSK = query.get('kiosk') === '1' || query.get('kiosk') === 'true';
const ROTATE: Rotation = query.get('rotate') === 'province' ? 'province' : query.get('rotate') === 'sector' ? 'sector' : null;
const EVERY_S = Math.min(600, Math.max(5, Number(query.get('every')) || 20));

const api = new Api();
const stream = new LiveStream(api);
const live = new LiveData(stream);

function useHashRoute(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return hash;
}

async function loadCatalog(): Promise<Catalog> {
  const [types, provinces] = await Promise.all([
    api.get<DeviceType[]>('/catalog/device-types'),
    api.get<Province[]>('/catalog/provinces'),
  ]);
  return {
    types: new Map(types.map((t) => [t.code, t])),
    provinces,
    provinceByCode: new Map(provinces.map((p) => [p.code, p])),
  };
}

function App() {
  const [lang, setLangState] = useState<Lang>(initialLang());
  const [timeZone, setTimeZoneState] = useState(initialTimeZone());
  const [session, setSession] = useState(api.current);
  const [notice, setNotice] = useState<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [catalog, setCatalog] = useState<Catalog | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const t = useMemo(() => translator(lang), [lang]);
  const fmt = useMemo(() => formats(lang, timeZone), [lang, timeZone]);

  useEffect(() => {
    rememberLang(lang);
    document.title = `IOC · ${t('app.title')}`;
  }, [lang, t]);

  useEffect(
    () =>
      api.onChange((current, reason) => {
        setSession(current);
        if (!current) {
          stream.stop();
          setMe(null);
          setNotice(reason === 'expired' ? 'expired' : reason === 'logout' ? 'logout' : null);
        }
      }),
    [],
  );

  useEffect(() => {
    if (!session) return;
    let cancelled = false;
    setLoadError(null);
    Promise.all([api.get<Me>('/auth/me'), catalog ? Promise.resolve(catalog) : loadCatalog()]).then(
      ([who, loaded]) => {
        if (cancelled) return;
        setMe(who);
        setCatalog(loaded);
        stream.start();
      },
      (failure: unknown) => {
        if (!cancelled) setLoadError(failure instanceof Error ? failure.message : String(failure));
      },
    );
    return () => {
      cancelled = true;
    };
    // The session object changes on every renewal; only logging in (a new user) reloads.
  }, [session?.username, Boolean(session)]);

  const setLang = (next: Lang) => setLangState(next);
  const setTimeZone = (zone: string) => {
    rememberTimeZone(zone);
    setTimeZoneState(zone);
  };

  if (!session) {
    const message = notice === 'expired' ? t('login.expired') : notice === 'logout' ? t('login.loggedOut') : null;
    return <Login api={api} t={t} lang={lang} setLang={setLang} notice={message} />;
  }
  if (loadError) {
    return (
      <main class="loading">
        <p class="error">{t('error.generic', { m: loadError })}</p>
        <button type="button" onClick={() => void api.logout()}>
          {t('nav.logout')}
        </button>
      </main>
    );
  }
  if (!me || !catalog) return <main class="loading">{t('loading')}</main>;
  const center: Center = { api, stream, live, me, catalog, lang, t, fmt, setLang, setTimeZone, kiosk: KIOSK };
  return (
    <CenterContext.Provider value={center}>
      <Console />
    </CenterContext.Provider>
  );
}

function Console() {
  const center = useCenter();
  const hash = useHashRoute();
  const [province, setProvince] = useState<string | null>(query.get('province'));
  const initialSector = query.get('sector');
  const [sector, setSector] = useState<Sector | null>(SECTORS.includes(initialSector as Sector) ? (initialSector as Sector) : null);
  const device = /^#\/device\/(.+)$/.exec(hash);
  useEffect(() => {
    document.body.classList.toggle('kiosk', center.kiosk);
  }, [center.kiosk]);
  return (
    <div class={`app${center.kiosk ? ' kiosk' : ''}`}>
      <Header province={province} setProvince={setProvince} sector={sector} setSector={setSector} />
      <StreamBanner t={center.t} />
      {device ? (
        <DevicePage deviceId={decodeURIComponent(device[1])} />
      ) : center.kiosk ? (
        <Kiosk rotate={ROTATE} everyS={EVERY_S} province={province} sector={sector} />
      ) : (
        <Overview province={province} sector={sector} setProvince={setProvince} />
      )}
    </div>
  );
}

function StreamStatus({ t }: { t: Translate }) {
  const [state, setState] = useState<StreamState>(stream.state);
  useEffect(() => stream.onState(setState), []);
  if (state.kind === 'live') {
    return (
      <span class="stream live" data-stream-state="live" role="status">
        <span class="dot" aria-hidden="true">●</span> {t('stream.live')}
      </span>
    );
  }
  if (state.kind === 'connecting') {
    return (
      <span class="stream connecting" data-stream-state="connecting" role="status">
        <span class="dot" aria-hidden="true">◌</span> {t('stream.connecting')}
      </span>
    );
  }
  return (
    <span class="stream down" data-stream-state="down" title={state.reason}>
      <span class="dot" aria-hidden="true">✖</span> {t('stream.offline')}
    </span>
  );
}

/** Across the page while the stream is down: what happened, when the next try is, and a way to try now. */
function StreamBanner({ t }: { t: Translate }) {
  const [state, setState] = useState<StreamState>(stream.state);
  useEffect(() => stream.onState(setState), []);
  const now = useNow(1000);
  if (state.kind !== 'down') return null;
  return (
    <div class="stream-banner" role="alert" data-stream-banner>
      <span class="dot" aria-hidden="true">✖</span>
      <span>{t('stream.down', { s: Math.max(0, Math.ceil((state.retryAt - now) / 1000)) })}</span>
      <button type="button" onClick={() => stream.reconnectNow()}>
        {t('stream.retryNow')}
      </button>
    </div>
  );
}

function Header({
  province,
  setProvince,
  sector,
  setSector,
}: {
  province: string | null;
  setProvince: (code: string | null) => void;
  sector: Sector | null;
  setSector: (sector: Sector | null) => void;
}) {
  const center = useCenter();
  const { t, lang, me, catalog, fmt } = center;
  const now = useNow(1000);
  const zones = [...new Set([DEFAULT_TIME_ZONE, 'UTC', browserTimeZone(), fmt.timeZone])];
  const provinces = [...catalog.provinces].sort((a, b) =>
    (lang === 'vi' ? a.name : a.name_ascii).localeCompare(lang === 'vi' ? b.name : b.name_ascii, fmt.locale),
  );
  return (
    <header class="topbar">
      <a class="brand" href="#/">
        <svg viewBox="0 0 32 32" width="30" height="30" aria-hidden="true">
          <rect width="32" height="32" rx="6" fill="#0b3d5c" />
          <circle cx="16" cy="16" r="6" fill="none" stroke="#4fd1c5" stroke-width="3" />
          <circle cx="16" cy="16" r="2" fill="#fbd38d" />
        </svg>
        <span class="brand-text">
          <strong data-i18n="app.title">{t('app.title')}</strong>
          {!center.kiosk && <small>{t('app.subtitle')}</small>}
        </span>
      </a>
      {!center.kiosk && (
        <nav class="filters">
          <label>
            <span class="sr">{t('filter.province')}</span>
            <select
              value={province ?? ''}
              data-filter="province"
              onChange={(e) => setProvince((e.target as HTMLSelectElement).value || null)}
            >
              <option value="">{t('filter.allProvinces')}</option>
              {provinces.map((p) => (
                <option key={p.code} value={p.code}>
                  {lang === 'vi' ? p.name : p.name_ascii}
                </option>
              ))}
            </select>
          </label>
          <label>
            <span class="sr">{t('filter.sector')}</span>
            <select value={sector ?? ''} data-filter="sector" onChange={(e) => setSector(((e.target as HTMLSelectElement).value || null) as Sector | null)}>
              <option value="">{t('filter.allSectors')}</option>
              {SECTORS.map((s) => (
                <option key={s} value={s}>
                  {t(`sector.${s}`)}
                </option>
              ))}
            </select>
          </label>
        </nav>
      )}
      <StreamStatus t={t} />
      <div class="clock" title={fmt.timeZone}>
        {center.kiosk ? fmt.clock(new Date(now)) : fmt.shortClock(new Date(now))} <small>{fmt.zoneLabel()}</small>
      </div>
      {!center.kiosk && (
        <label class="tz">
          <span class="sr">{t('nav.timezone')}</span>
          <select value={fmt.timeZone} onChange={(e) => center.setTimeZone((e.target as HTMLSelectElement).value)} data-filter="tz">
            {zones.map((z) => (
              <option key={z} value={z}>
                {z === browserTimeZone() && z !== DEFAULT_TIME_ZONE ? `${z} (${t('nav.tzLocal')})` : z}
              </option>
            ))}
          </select>
        </label>
      )}
      <button type="button" class="quiet lang-switch" data-lang-switch onClick={() => center.setLang(lang === 'vi' ? 'en' : 'vi')}>
        {t('lang.switch')}
      </button>
      <span class="who" data-user={me.name} title={me.name}>
        <span>{me.display_name || me.name}</span>
        <small>{t(`role.${me.role}`)}</small>
      </span>
      {!center.kiosk && (
        <button type="button" class="quiet" data-logout onClick={() => void api.logout()}>
          {t('nav.logout')}
        </button>
      )}
    </header>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
