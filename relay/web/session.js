// The session view (/s/<id>): header with state and actions, the live conversation, and
// the message box.

import { api, ApiError, sessionPath } from './api.js';
import { changesHref } from './changes.js';
import { Timeline } from './conversation.js';
import { badge, basename, fill, h, setBadge, toast, uuid } from './dom.js';
import { describeGrant, GrantsList, makeGrant } from './grants.js';
import { environmentLabel } from './home.js';
import { LiveEvents } from './live.js';

const ACTIVE = new Set(['busy', 'awaiting_permission']);

export function sessionView(root, sessionId) {
  let alive = true;
  let session = null;
  let state = 'queued';
  let environmentName = '';
  const timers = new Set();
  const later = (fn, ms) => {
    const id = setTimeout(() => {
      timers.delete(id);
      if (alive) fn();
    }, ms);
    timers.add(id);
  };

  // Header -----------------------------------------------------------------------------
  const banner = h('div', { class: 'conn', role: 'status', hidden: true });
  const title = h('h1', { class: 'title session-title' }, 'Session');
  const stateBadge = badge('queued');
  const meta = h('div', { class: 'session-meta' });
  const changesLink = h('a', { class: 'btn small ghost', href: changesHref({ sessionId }), 'data-nav': '' }, 'Changes');
  const renameButton = h('button', { type: 'button', class: 'btn small ghost', onclick: startRename }, 'Rename');
  const interruptButton = h('button', { type: 'button', class: 'btn small ghost', onclick: interrupt, disabled: true }, 'Interrupt');
  const stopButton = h('button', { type: 'button', class: 'btn small ghost danger', onclick: stop }, 'Stop');
  const resumeButton = h('button', { type: 'button', class: 'btn small ghost', onclick: resume, hidden: true }, 'Resume');
  const titleRow = h(
    'div',
    { class: 'bar-row' },
    h('a', { class: 'back', href: '/', 'data-nav': '', 'aria-label': 'All sessions' }, '‹'),
    title,
    stateBadge,
  );
  const header = h(
    'header',
    { class: 'bar' },
    h(
      'div',
      { class: 'bar-inner stacked' },
      titleRow,
      h('div', { class: 'bar-row sub' }, meta, h('div', { class: 'actions' }, changesLink, renameButton, interruptButton, stopButton, resumeButton)),
    ),
    banner,
  );

  // Conversation and composer ------------------------------------------------------------
  let grants = null; // GrantsList, once the session's environment is known
  const grantsSlot = h('div', { class: 'grants-slot' });
  const timeline = new Timeline({
    onDecide: decide,
    onGrant: grantAndAllow,
    grantText: (id) => {
      const grant = grants?.byId(id);
      return grant ? describeGrant(grant) : null;
    },
  });
  const input = h('textarea', {
    class: 'composer-input',
    rows: 1,
    placeholder: 'Message the agent',
    'aria-label': 'Message',
    enterkeyhint: 'send',
    autocomplete: 'off',
  });
  const sendButton = h('button', { type: 'submit', class: 'send', 'aria-label': 'Send' }, h('span', { 'aria-hidden': 'true' }, '↑'));
  const composer = h(
    'form',
    { class: 'composer', onsubmit: (event) => { event.preventDefault(); send(); } },
    h('div', { class: 'composer-inner' }, input, sendButton),
  );
  input.addEventListener('keydown', (event) => {
    // Enter sends, Shift+Enter is a newline; never while an IME is composing a character.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener('input', autosize);

  fill(root, header, h('main', { class: 'page conversation' }, grantsSlot, timeline.el), composer);

  let bannerTimer = 0;
  const live = new LiveEvents(sessionId, {
    onEvent,
    onPartial: (partial, lastSeq) => timeline.partial(partial, lastSeq),
    onConnection(connection) {
      clearTimeout(bannerTimer);
      if (connection === 'live') {
        banner.hidden = true;
        banner.className = 'conn';
      } else if (connection === 'reconnecting') {
        showBanner('Reconnecting…');
      } else {
        // Only say "connecting" if it takes a moment: a fast first load shows nothing.
        bannerTimer = setTimeout(() => showBanner('Connecting…'), 700);
      }
    },
    onGone(error) {
      if (error.status === 404) notFound();
    },
  });
  function showBanner(text) {
    fill(banner, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
    banner.className = 'conn down';
    banner.hidden = false;
  }

  load();

  async function load() {
    try {
      session = await api('GET', sessionPath(sessionId));
    } catch (error) {
      if (!alive) return;
      if (error.status === 404) notFound();
      else if (error.status !== 401) failed(error);
      return;
    }
    if (!alive) return;
    showSession();
    setState(session.state);
    timeline.cwd = session.cwd ?? null;
    grants = new GrantsList(session.environment_id, sessionId);
    fill(grantsSlot, grants.el);
    grants.refresh().then(() => timeline.grantsKnown());
    live.start();
    api('GET', '/api/environments').then(
      ({ environments }) => {
        const env = environments.find((e) => e.id === session.environment_id);
        if (env && alive) {
          environmentName = environmentLabel(env, environments);
          showSession();
        }
      },
      () => {},
    );
  }

  function showSession() {
    const name = session.title || 'Untitled session';
    if (!title.querySelector('input')) fill(title, name);
    title.title = name;
    document.title = `${state === 'awaiting_permission' ? '(!) ' : ''}${name} · rcd`;
    const where = session.branch || (session.cwd ? basename(session.cwd) : '');
    fill(meta, 
      environmentName ? h('span', { class: 'env-name' }, environmentName) : null,
      environmentName && where ? ' · ' : null,
      where ? h('span', { class: 'mono' }, where) : null,
      session.agent ? ' · ' : null,
      session.agent ? h('span', { class: 'session-agent' }, session.agent) : null,
    );
    meta.title = session.cwd ?? '';
  }

  function onEvent(event) {
    timeline.add(event);
    const data = event.data ?? {};
    if (event.kind === 'status' && typeof data.state === 'string') {
      setState(data.state);
      refreshSoon();
    }
    else if (event.kind === 'session_ended') setState('ended');
    else if (event.kind === 'session_started' && session) {
      session.cwd = data.cwd ?? session.cwd;
      session.agent = data.agent ?? session.agent; // every session's, its default's too
      timeline.cwd = session.cwd;
      session.branch = data.branch ?? session.branch;
      showSession();
    }
  }

  // Title and branch are not events: re-read them after state changes (another device may
  // have renamed the session), at most once per burst of events.
  let refreshTimer = 0;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      try {
        const fresh = await api('GET', sessionPath(sessionId));
        if (alive) {
          session = fresh;
          showSession();
        }
      } catch {
        // The stream reports trouble; this is only a nicety.
      }
    }, 400);
  }

  function setState(next) {
    state = next;
    setBadge(stateBadge, next);
    if (session) showSession();
    const ended = next === 'ended';
    const ending = ended || next === 'ending';
    // The machine has been offline past the relay's grace: it refuses messages (409)
    // rather than keep them for a daemon that may not come back. A stop is still taken.
    const offline = next === 'disconnected';
    interruptButton.disabled = !ACTIVE.has(next);
    stopButton.hidden = ended;
    stopButton.disabled = ending;
    interruptButton.hidden = ended;
    resumeButton.hidden = !ended;
    input.disabled = ending || offline;
    sendButton.disabled = ending || offline;
    input.placeholder = ending
      ? 'This session has ended'
      : offline
        ? 'The machine is offline: messages cannot reach it'
        : 'Message the agent';
  }

  // Actions ------------------------------------------------------------------------------
  function send() {
    const text = input.value;
    if (!text.trim() || input.disabled) return;
    input.value = '';
    autosize();
    const id = uuid();
    const pending = timeline.addPending(id, text);
    deliver(id, text, pending, 0);
  }

  async function deliver(id, text, pending, attempt) {
    try {
      await api('POST', `${sessionPath(sessionId)}/messages`, { id, text });
      pending.queued();
    } catch (error) {
      if (!alive) return;
      // The same id is the same message, so retrying after a network error is safe.
      if ((error.status === 0 || error.status >= 500) && attempt < 20) {
        pending.retrying();
        later(() => deliver(id, text, pending, attempt + 1), Math.min(8000, 500 * 2 ** attempt));
        return;
      }
      if (error.status !== 401) pending.failed(error.message, () => deliver(id, text, pending, 0));
    }
  }

  async function decide(requestId, decision, card) {
    card.busy(decision);
    try {
      await api('POST', `${sessionPath(sessionId)}/permissions/${encodeURIComponent(requestId)}`, { decision });
    } catch (error) {
      if (!alive) return;
      if (error.code === 'permission_already_resolved') return; // its outcome is on its way
      card.idle();
      if (error.status !== 401) toast(error.message);
    }
  }

  /** "Allow for a while" on a permission card: ask the daemon for the grant, then allow
   * this request (the grant covers the ones after it). */
  async function grantAndAllow(request, grant, everywhere, card, button) {
    if (!everywhere) grant.session_id = sessionId;
    button.disabled = true;
    button.textContent = 'Allowing…';
    try {
      await makeGrant(session.environment_id, grant);
    } catch (error) {
      if (!alive) return;
      button.disabled = false;
      button.textContent = 'Allow for this long';
      if (error.status !== 401) toast(error.message);
      return;
    }
    if (!alive) return;
    grants?.refresh();
    await decide(request.request_id, 'allow', card);
  }

  async function post(action, button, busyLabel) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = busyLabel;
    try {
      return await api('POST', `${sessionPath(sessionId)}/${action}`);
    } catch (error) {
      if (alive && error.status !== 401) toast(error.message);
      return null;
    } finally {
      button.textContent = label;
      if (alive) setState(state);
    }
  }

  function interrupt() {
    post('interrupt', interruptButton, 'Interrupting…');
  }

  let stopArmed = false;
  function stop() {
    // Two taps: the first arms the button for a few seconds.
    if (!stopArmed) {
      stopArmed = true;
      stopButton.textContent = 'Stop session?';
      stopButton.classList.add('armed');
      later(disarm, 3500);
      return;
    }
    disarm();
    post('stop', stopButton, 'Stopping…');
  }
  function disarm() {
    stopArmed = false;
    stopButton.textContent = 'Stop';
    stopButton.classList.remove('armed');
  }

  async function resume() {
    const resumed = await post('resume', resumeButton, 'Resuming…');
    if (resumed && alive) {
      session = resumed;
      setState(resumed.state);
    }
  }

  function startRename() {
    if (!session || title.querySelector('input')) return;
    const field = h('input', {
      class: 'rename-input',
      value: session.title ?? '',
      maxlength: 500,
      'aria-label': 'Session title',
      enterkeyhint: 'done',
    });
    let finished = false;
    const finish = async (save) => {
      // Removing the field blurs it, and blur finishes too: only the first call counts.
      if (finished) return;
      finished = true;
      const next = field.value.trim();
      field.remove();
      if (save && next && next !== session.title) {
        try {
          session = await api('PATCH', sessionPath(sessionId), { title: next });
        } catch (error) {
          if (alive && error.status !== 401) toast(error.message);
        }
      }
      if (alive) showSession();
    };
    field.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        finish(true);
      } else if (event.key === 'Escape') finish(false);
    });
    field.addEventListener('blur', () => finish(true));
    fill(title, field);
    field.focus();
    field.select();
  }

  function autosize() {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, window.innerHeight * 0.4)}px`;
  }

  function notFound() {
    live.stop();
    fill(root, 
      h(
        'div',
        { class: 'center-card' },
        h('h1', null, 'No such session'),
        h('p', null, 'It may belong to another relay, or the link is mistyped.'),
        h('a', { class: 'btn primary', href: '/', 'data-nav': '' }, 'All sessions'),
      ),
    );
  }

  function failed(error) {
    fill(root, 
      h(
        'div',
        { class: 'center-card' },
        h('h1', null, 'Could not open this session'),
        h('p', null, error instanceof ApiError ? error.message : String(error)),
        h('button', { type: 'button', class: 'btn primary', onclick: () => location.reload() }, 'Try again'),
      ),
    );
  }

  return {
    destroy() {
      alive = false;
      live.stop();
      grants?.close();
      clearTimeout(bannerTimer);
      clearTimeout(refreshTimer);
      for (const id of timers) clearTimeout(id);
    },
  };
}
