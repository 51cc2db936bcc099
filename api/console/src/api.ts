// The console's one way to the API: the session (access and refresh tokens, kept in this tab's sessionStorage,
// never localStorage), renewal before the access token expires, and errors with the server's message.

import type { TokenPair } from './types';

const SESSION_KEY = 'ioc.session';
// Renew this long before the access token expires (or at 80 % of its life, if that is sooner).
const RENEW_AHEAD_MS = 60_000;

export interface Session {
  username: string;
  accessToken: string;
  accessExpiresAt: number; // epoch ms
  refreshToken: string;
  refreshExpiresAt: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterS: number | null = null,
  ) {
    super(message);
  }
}

function detailOf(body: unknown, fallback: string): string {
  if (body && typeof body === 'object' && 'detail' in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === 'string') return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((d) => (d && typeof d === 'object' && 'msg' in d ? String((d as { msg: unknown }).msg) : String(d)))
        .join('; ');
    }
  }
  return fallback;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const retry = response.headers.get('Retry-After');
  const retryAfterS = retry !== null && /^\d+(\.\d+)?$/.test(retry) ? Number(retry) : null;
  return new ApiError(response.status, detailOf(body, `${response.status} ${response.statusText}`), retryAfterS);
}

function sessionFrom(username: string, pair: TokenPair): Session {
  return {
    username,
    accessToken: pair.access_token,
    accessExpiresAt: Date.parse(pair.access_expires_at),
    refreshToken: pair.refresh_token,
    refreshExpiresAt: Date.parse(pair.refresh_expires_at),
  };
}

type Listener = (session: Session | null, reason: string | null) => void;

/** Owns the tokens: logs in, renews, logs out, and tells listeners when the session starts or ends. */
export class Api {
  private session: Session | null = null;
  private renewing: Promise<Session | null> | null = null;
  private renewTimer: number | undefined;
  private listeners = new Set<Listener>();

  constructor() {
    const stored = sessionStorage.getItem(SESSION_KEY);
    if (stored) {
      try {
        const session = JSON.parse(stored) as Session;
        if (session.refreshExpiresAt > Date.now()) this.adopt(session);
        else sessionStorage.removeItem(SESSION_KEY);
      } catch {
        sessionStorage.removeItem(SESSION_KEY);
      }
    }
    document.addEventListener('visibilitychange', () => {
      // A tab that slept past its renewal time renews as soon as it is seen again.
      if (document.visibilityState === 'visible' && this.session && this.session.accessExpiresAt - Date.now() < RENEW_AHEAD_MS) {
        void this.renew();
      }
    });
  }

  get current(): Session | null {
    return this.session;
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private adopt(session: Session | null, reason: string | null = null): void {
    this.session = session;
    window.clearTimeout(this.renewTimer);
    if (session) {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      const life = session.accessExpiresAt - Date.now();
      const wait = Math.max(5_000, Math.min(life - RENEW_AHEAD_MS, life * 0.8));
      this.renewTimer = window.setTimeout(() => void this.renew(), wait);
    } else {
      sessionStorage.removeItem(SESSION_KEY);
    }
    for (const listener of this.listeners) listener(session, reason);
  }

  async login(username: string, password: string): Promise<Session> {
    const response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username, password }),
      credentials: 'omit',
    });
    if (!response.ok) throw await errorFrom(response);
    const session = sessionFrom(username, (await response.json()) as TokenPair);
    this.adopt(session);
    return session;
  }

  /** New tokens for the refresh token; one renewal at a time (a refresh token presented twice ends the session). */
  renew(): Promise<Session | null> {
    if (this.renewing) return this.renewing;
    const session = this.session;
    if (!session) return Promise.resolve(null);
    this.renewing = (async () => {
      try {
        const response = await fetch('/auth/refresh', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify({ refresh_token: session.refreshToken }),
          credentials: 'omit',
        });
        if (response.status === 401 || response.status === 422) {
          this.adopt(null, 'expired');
          return null;
        }
        if (!response.ok) throw await errorFrom(response);
        const renewed = sessionFrom(session.username, (await response.json()) as TokenPair);
        this.adopt(renewed);
        return renewed;
      } catch (error) {
        // The center is unreachable or busy: keep the tokens and try again shortly.
        window.clearTimeout(this.renewTimer);
        if (this.session && this.session.accessExpiresAt > Date.now()) {
          this.renewTimer = window.setTimeout(() => void this.renew(), 10_000);
        }
        throw error;
      } finally {
        this.renewing = null;
      }
    })();
    return this.renewing;
  }

  async logout(): Promise<void> {
    const session = this.session;
    this.adopt(null, 'logout');
    if (session) {
      try {
        await fetch('/auth/logout', {
          method: 'POST',
          headers: { Authorization: `Bearer ${session.accessToken}` },
          credentials: 'omit',
        });
      } catch {
        // The tokens are gone from this tab either way; the session ends on the server when it expires.
      }
    }
  }

  /** A token that is valid now (renewed first when it has expired), or null when logged out. */
  async token(): Promise<string | null> {
    const session = this.session;
    if (!session) return null;
    if (session.accessExpiresAt - Date.now() < 5_000) {
      const renewed = await this.renew();
      return renewed ? renewed.accessToken : null;
    }
    return session.accessToken;
  }

  /** A request with the access token. A 401 renews once and retries; if that fails the session ends. */
  async request(path: string, init: RequestInit = {}, retried = false): Promise<Response> {
    const token = await this.token();
    if (!token) throw new ApiError(401, 'not logged in');
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${token}`);
    if (!headers.has('Accept')) headers.set('Accept', 'application/json');
    const response = await fetch(path, { ...init, headers, credentials: 'omit' });
    if (response.status === 401) {
      if (!retried && this.session) {
        const renewed = await this.renew().catch(() => null);
        if (renewed) return this.request(path, init, true);
      }
      const error = await errorFrom(response);
      this.adopt(null, 'expired');
      throw error;
    }
    return response;
  }

  async get<T>(path: string, params: Record<string, string | number | undefined | null> = {}): Promise<T> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== '') query.set(key, String(value));
    }
    const url = query.size ? `${path}?${query}` : path;
    const response = await this.request(url);
    if (!response.ok) throw await errorFrom(response);
    return (await response.json()) as T;
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    const response = await this.request(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }
}

/** A list answer, whether the route returns a plain array or a page object with its items. */
export function itemsOf<T>(body: unknown): T[] {
  if (Array.isArray(body)) return body as T[];
  if (body && typeof body === 'object') {
    for (const key of ['items', 'readings', 'buckets', 'entries', 'results', 'data']) {
      const value = (body as Record<string, unknown>)[key];
      if (Array.isArray(value)) return value as T[];
    }
  }
  return [];
}
