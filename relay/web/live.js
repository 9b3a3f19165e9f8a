// A session's live event stream: EventSource with exactly-once delivery by seq.
//
// EventSource reconnects by itself after a dropped connection and sends Last-Event-ID, so
// the relay resumes right after the last event we got. When it gives up (readyState
// CLOSED: the relay answered with an error, e.g. a proxy's 502 while it restarts) we open
// a new one with ?after=<last seq>. Either way an event at or below the last seq we handed
// out is dropped, so nothing is ever shown twice.

import { api, ApiError, sessionPath } from './api.js';

export const EVENT_KINDS = [
  'session_started',
  'user_message',
  'assistant_text',
  'tool_use',
  'tool_result',
  'permission_request',
  'permission_resolved',
  'turn_result',
  'status',
  'error',
  'session_ended',
  'git_action',
];

/** The SSE event of the reply being written (no id:, never stored; see docs/api.md). */
export const PARTIAL_EVENT = 'assistant_partial';

export class LiveEvents {
  /**
   * onEvent(event) for each new event, in seq order;
   * onPartial(partial, lastSeq) for each piece of the reply being written;
   * onConnection('connecting' | 'live' | 'reconnecting');
   * onGone(error) when the session no longer exists or we are signed out.
   */
  constructor(sessionId, { onEvent, onPartial, onConnection, onGone }) {
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onPartial = onPartial ?? (() => {});
    this.onConnection = onConnection;
    this.onGone = onGone;
    this.lastSeq = 0;
    this.source = null;
    this.retryTimer = 0;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    this.state = '';
    this.wake = () => {
      if (!this.stopped && !this.source) this.reopenSoon(0);
    };
    window.addEventListener('online', this.wake);
    document.addEventListener('visibilitychange', this.wake);
  }

  start() {
    this.setState('connecting');
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.wake);
    document.removeEventListener('visibilitychange', this.wake);
    if (this.source) this.source.close();
    this.source = null;
  }

  setState(state) {
    if (state !== this.state) {
      this.state = state;
      this.onConnection(state);
    }
  }

  open() {
    const after = this.lastSeq > 0 ? `&after=${this.lastSeq}` : '';
    const source = new EventSource(`${sessionPath(this.sessionId)}/events?partials=1${after}`);
    this.source = source;
    source.onopen = () => {
      this.attempt = 0;
      this.everOpened = true;
      this.setState('live');
    };
    source.onerror = (event) => {
      // The session log's own `error` events arrive as `event: error` too: those are
      // messages (with data), not a broken connection.
      if (event instanceof MessageEvent || source.readyState === EventSource.OPEN) return;
      if (this.source !== source || this.stopped) return;
      this.setState(this.everOpened ? 'reconnecting' : 'connecting');
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.source = null;
        this.reopenSoon();
      }
    };
    const receive = (message) => this.receive(message);
    for (const kind of EVENT_KINDS) source.addEventListener(kind, receive);
    source.addEventListener(PARTIAL_EVENT, (message) => {
      if (this.source !== source) return;
      let partial;
      try {
        partial = JSON.parse(message.data);
      } catch {
        return;
      }
      if (partial && typeof partial === 'object') this.onPartial(partial, this.lastSeq);
    });
  }

  receive(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!event || typeof event.seq !== 'number' || event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    this.onEvent(event);
  }

  /** A page-level reconnect: check we still may read the session, then a new stream. */
  reopenSoon(delay) {
    clearTimeout(this.retryTimer);
    const wait = delay ?? Math.min(10000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.retryTimer = setTimeout(async () => {
      if (this.stopped || this.source) return;
      try {
        await api('GET', sessionPath(this.sessionId));
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 404)) {
          this.stop();
          this.onGone(error);
          return;
        }
        this.reopenSoon();
        return;
      }
      if (!this.stopped && !this.source) this.open();
    }, wait);
  }
}
