// The login page: POST /auth/login; wrong credentials and the login rate limit (429) say so in the page.

import { useState } from 'preact/hooks';

import type { Api } from '../api';
import { ApiError } from '../api';
import type { Lang, Translate } from '../i18n';

export function Login({ api, t, lang, setLang, notice }: { api: Api; t: Translate; lang: Lang; setLang: (lang: Lang) => void; notice: string | null }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(username.trim(), password);
    } catch (failure) {
      if (failure instanceof ApiError) {
        if (failure.status === 429) {
          const wait = failure.retryAfterS !== null ? ` (${t('login.retryIn', { s: Math.ceil(failure.retryAfterS) })})` : '';
          setError(`${t('login.limited')}: ${failure.message}${wait}`);
        } else if (failure.status === 401) {
          setError(t('login.bad'));
        } else {
          setError(failure.message);
        }
      } else {
        setError(`${t('login.unreachable')}: ${failure instanceof Error ? failure.message : String(failure)}`);
      }
      setPassword('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login-page">
      <form class="login" onSubmit={(e) => void submit(e)} data-login-form>
        <div class="login-brand">
          <svg viewBox="0 0 32 32" width="44" height="44" aria-hidden="true">
            <rect width="32" height="32" rx="6" fill="#0b3d5c" />
            <circle cx="16" cy="16" r="6" fill="none" stroke="#4fd1c5" stroke-width="3" />
            <circle cx="16" cy="16" r="2" fill="#fbd38d" />
          </svg>
          <div>
            <h1>{t('app.title')}</h1>
            <p>{t('app.subtitle')}</p>
          </div>
        </div>
        <h2>{t('login.title')}</h2>
        {notice && <p class="notice">{notice}</p>}
        <label>
          {t('login.username')}
          <input
            name="username"
            autocomplete="username"
            value={username}
            onInput={(e) => setUsername((e.target as HTMLInputElement).value)}
            required
            maxLength={64}
          />
        </label>
        <label>
          {t('login.password')}
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
            required
          />
        </label>
        {error && (
          <p class="error" role="alert" data-login-error>
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
        <button type="button" class="quiet lang-switch" data-lang-switch onClick={() => setLang(lang === 'vi' ? 'en' : 'vi')}>
          {t('lang.switch')}
        </button>
      </form>
    </main>
  );
}
