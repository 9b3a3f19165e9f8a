// Signed-in devices (/?devices): every browser signed in with a login link, with "Sign out"
// for each. Signing one out takes effect at once (its next request is refused and its live
// streams end within a second); signing out this device shows the signed-out screen.

import { api, signedOut } from './api.js';
import { ago, fill, h } from './dom.js';
import { notificationsPanel } from './notifications.js';

function when(seconds) {
  return seconds ? ago(seconds) : 'unknown';
}

export function devicesView(root) {
  let alive = true;
  const list = h('div', { class: 'device-list' }, h('div', { class: 'skeleton' }));
  const error = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  fill(
    root,
    h(
      'header',
      { class: 'bar' },
      h(
        'div',
        { class: 'bar-inner' },
        h(
          'div',
          { class: 'bar-row' },
          h('a', { class: 'back', href: '/', 'data-nav': '', 'aria-label': 'Back' }, '‹'),
          h('h1', { class: 'title' }, 'Signed-in devices'),
        ),
      ),
    ),
    h(
      'main',
      { class: 'page devices' },
      h(
        'p',
        { class: 'hint' },
        'Browsers signed in to this relay with a login link. Sign out any you do not recognise, or one you lost: it loses access at once.',
      ),
      error,
      list,
      notificationsPanel(),
    ),
  );
  document.title = 'Signed-in devices · rcd';

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  async function load() {
    let signIns;
    try {
      ({ sign_ins: signIns } = await api('GET', '/api/sign-ins'));
    } catch (err) {
      if (alive && err.status !== 401) showError(err.message);
      return;
    }
    if (!alive) return;
    error.hidden = true;
    fill(
      list,
      ...(signIns.length ? signIns.map(row) : [h('div', { class: 'empty' }, 'No browser is signed in.')]),
    );
  }

  function row(signIn) {
    const button = h('button', { type: 'button', class: 'btn small danger' }, signIn.current ? 'Sign out this device' : 'Sign out');
    button.addEventListener('click', () => signOut(signIn, button));
    return h(
      'div',
      { class: 'device', dataset: { signInId: signIn.id } },
      h(
        'div',
        { class: 'device-line' },
        h('span', { class: 'device-name', title: signIn.user_agent ?? '' }, signIn.name),
        signIn.current ? h('span', { class: 'this-device' }, 'this device') : null,
      ),
      h('div', { class: 'device-meta' }, `from ${signIn.address ?? 'an unknown address'} · signed in ${when(signIn.created_at)} · last used ${when(signIn.last_used_at)}`),
      h('div', { class: 'device-actions' }, button),
    );
  }

  async function signOut(signIn, button) {
    button.disabled = true;
    try {
      await api('DELETE', `/api/sign-ins/${encodeURIComponent(signIn.id)}`);
    } catch (err) {
      if (err.status === 401) return;
      if (err.status !== 404) {
        button.disabled = false;
        showError(err.message);
        return;
      }
      // 404: signed out already; the list below shows what is left.
    }
    if (signIn.current) {
      signedOut();
      return;
    }
    await load();
  }

  load();
  return {
    destroy() {
      alive = false;
    },
  };
}
