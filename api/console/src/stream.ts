// The live stream: GET /stream read with fetch (EventSource cannot send the Authorization header) and parsed as
// Server-Sent Events; resumed with Last-Event-ID after a drop, with a growing back-off, by itself.

import type { Api } from './api';
import { ApiError } from './api';

export interface StreamEvent {
  event: string;
  data: string;
  id: string | null;
}

/** A Server-Sent Events parser (the WHATWG rules): feed it decoded text, it calls back once per event. */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private sawCr = false;
  lastEventId: string | null = null;
  retryMs: number | null = null;

  constructor(private readonly emit: (event: StreamEvent) => void) {}

  feed(text: string): void {
    let chunk = text;
    // A CRLF split across two chunks: the LF ends nothing new.
    if (this.sawCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.sawCr = chunk.endsWith('\r');
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      this.line(this.buffer.slice(start, found.index));
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length) {
        this.emit({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastEventId });
      }
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return; // a comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
  }
}

export type StreamState =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'live'; since: number }
  | { kind: 'down'; retryAt: number; reason: string; attempt: number };

const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
// The server sends a heartbeat every 15 s: this long without a byte means the connection is dead.
const SILENCE_LIMIT_MS = 40_000;

/** One live connection to /stream for as long as it is started; reconnects by itself. */
export class LiveStream {
  private controller: AbortController | null = null;
  private lastEventId: string | null = null;
  private attempt = 0;
  private retryTimer: number | undefined;
  private watchdog: number | undefined;
  private running = false;
  private stateListeners = new Set<(state: StreamState) => void>();
  private eventListeners = new Set<(event: StreamEvent) => void>();
  state: StreamState = { kind: 'connecting', attempt: 0 };

  constructor(private readonly api: Api) {
    // The browser knows when the network went away: say so at once rather than when the watchdog notices.
    window.addEventListener('offline', () => {
      if (this.running) this.controller?.abort(new Error('offline'));
    });
    window.addEventListener('online', () => this.reconnectNow());
  }

  onState(listener: (state: StreamState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  onEvent(listener: (event: StreamEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private setState(state: StreamState): void {
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.connect();
  }

  stop(): void {
    this.running = false;
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.watchdog);
    this.controller?.abort();
    this.controller = null;
    this.lastEventId = null;
  }

  /** Drop the connection now and reconnect at once (e.g. the network came back). */
  reconnectNow(): void {
    if (!this.running) return;
    window.clearTimeout(this.retryTimer);
    this.controller?.abort();
    this.attempt = 0;
    void this.connect();
  }

  private armWatchdog(controller: AbortController): void {
    window.clearTimeout(this.watchdog);
    this.watchdog = window.setTimeout(() => controller.abort(new Error('no data or heartbeat')), SILENCE_LIMIT_MS);
  }

  private async connect(): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    this.setState({ kind: 'connecting', attempt: this.attempt });
    let reason = 'closed';
    let retryHintMs: number | null = null;
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
      this.armWatchdog(controller);
      const response = await this.api.request('/stream', { headers, signal: controller.signal, cache: 'no-store' });
      if (!response.ok || !response.body) {
        const text = await response.text().catch(() => '');
        throw new ApiError(response.status, text.slice(0, 200) || `HTTP ${response.status}`);
      }
      const parser = new SseParser((event) => {
        if (event.id !== null) this.lastEventId = event.id;
        if (event.event === 'ready' && this.state.kind !== 'live') {
          this.attempt = 0;
          this.setState({ kind: 'live', since: Date.now() });
        }
        for (const listener of this.eventListeners) listener(event);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.armWatchdog(controller);
        parser.feed(value);
        // An id with no event after it (a bare heartbeat line) still moves the resume point.
        if (parser.lastEventId !== null) this.lastEventId = parser.lastEventId;
        retryHintMs = parser.retryMs;
      }
      reason = 'closed by the center';
    } catch (error) {
      if (!this.running || this.controller !== controller) return;
      reason = error instanceof Error ? error.message : String(error);
      if (error instanceof ApiError && error.status === 401) {
        // The session ended: the page returns to the login; nothing to reconnect.
        this.stop();
        return;
      }
    } finally {
      window.clearTimeout(this.watchdog);
    }
    if (!this.running || this.controller !== controller) return;
    this.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, Math.max(retryHintMs ?? 0, BACKOFF_MIN_MS * 2 ** (this.attempt - 1)));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.setState({ kind: 'down', retryAt: Date.now() + delay, reason, attempt: this.attempt });
    this.retryTimer = window.setTimeout(() => void this.connect(), delay);
  }
}
