// Notifications on this device (part of /?devices): turn Web Push on or off for this
// browser, and choose what wakes it. The browser subscribes with the relay's key; the relay
// keeps the subscription for this sign-in (and drops it when this browser signs out).

import { api } from './api.js';
import { fill, h } from './dom.js';

const LONG_TURNS = [
  [30, '30 s'],
  [60, '1 min'],
  [300, '5 min'],
  [900, '15 min'],
];

const CHOICES = [
  ['permission', 'A tool waits for your answer'],
  ['long_turn', 'A turn ended after'],
  ['error', 'An error'],
  ['session_ended', 'A session ended by itself'],
  ['offline', 'A machine went offline'],
];

function b64urlBytes(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function supported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

function appleWithoutInstall() {
  // iPadOS Safari says it is a Mac; a Mac with a touch screen is an iPad.
  const apple = /iPhone|iPad|iPod/.test(navigator.userAgent) || (/Macintosh/.test(navigator.userAgent) && navigator.maxTouchPoints > 1);
  const installed = window.matchMedia?.('(display-mode: standalone)').matches || navigator.standalone;
  return apple && !installed;
}

export function notificationsPanel() {
  const status = h('p', { class: 'hint notify-status' });
  const button = h('button', { type: 'button', class: 'btn small' }, 'Turn on');
  const choices = h('div', { class: 'notify-choices', role: 'group', 'aria-label': 'What wakes this device', hidden: true });
  const error = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  const panel = h(
    'section',
    { class: 'notify', 'aria-labelledby': 'notify-title' },
    h('h2', { id: 'notify-title', class: 'section-title' }, 'Notifications on this device'),
    h('div', { class: 'notify-body' }, status, choices, error, h('div', { class: 'device-actions' }, button)),
  );
  let subscription = null; // the relay's record of this browser's subscription

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function render() {
    error.hidden = true;
    if (subscription) {
      status.textContent = 'On: this device is woken when a session needs you.';
      button.textContent = 'Turn off';
      choices.hidden = false;
      fill(choices, ...CHOICES.map(([key, label]) => choice(key, label)));
    } else {
      status.textContent = 'Off: turn on to be told when a tool waits for your answer.';
      button.textContent = 'Turn on';
      choices.hidden = true;
    }
  }

  async function change(changes, undo) {
    const settings = { ...subscription.settings, ...changes };
    try {
      subscription = await api('PUT', `/api/push/subscriptions/${encodeURIComponent(subscription.id)}/settings`, settings);
    } catch (err) {
      undo();
      showError(err.message);
    }
  }

  function choice(key, label) {
    const box = h('input', { type: 'checkbox', name: key });
    box.checked = Boolean(subscription.settings[key]);
    box.addEventListener('change', () => change({ [key]: box.checked }, () => (box.checked = !box.checked)));
    if (key !== 'long_turn') return h('label', { class: 'notify-choice' }, box, ' ', label);
    // How long a turn must run to be worth a notification.
    const current = subscription.settings.long_turn_seconds;
    const choices = LONG_TURNS.some(([seconds]) => seconds === current) ? LONG_TURNS : [...LONG_TURNS, [current, `${current} s`]];
    const select = h(
      'select',
      { name: 'long_turn_seconds', 'aria-label': 'How long a turn must run' },
      ...choices.map(([seconds, text]) => h('option', { value: String(seconds) }, text)),
    );
    select.value = String(current);
    let before = select.value;
    select.addEventListener('change', async () => {
      await change({ long_turn_seconds: Number(select.value) }, () => (select.value = before));
      before = select.value;
    });
    return h('div', { class: 'notify-choice' }, h('label', { class: 'notify-inline' }, box, ' ', label), select);
  }

  async function registration() {
    return navigator.serviceWorker.register('/sw.js', { scope: '/' });
  }

  async function turnOn() {
    if (Notification.permission === 'denied') {
      showError('This browser blocks notifications from this site: allow them in its site settings, then try again.');
      return;
    }
    if ((await Notification.requestPermission()) !== 'granted') {
      showError('Notifications were not allowed.');
      return;
    }
    const { public_key: key } = await api('GET', '/api/push/key');
    const reg = await registration();
    await navigator.serviceWorker.ready;
    let pushed = await reg.pushManager.getSubscription();
    if (pushed) {
      // A subscription for another key (a different relay) cannot be reused.
      const current = pushed.options?.applicationServerKey;
      if (current && btoa(String.fromCharCode(...new Uint8Array(current))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') !== key) {
        await pushed.unsubscribe();
        pushed = null;
      }
    }
    if (!pushed) {
      pushed = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlBytes(key) });
    }
    subscription = await api('POST', '/api/push/subscriptions', pushed.toJSON());
    render();
  }

  async function turnOff() {
    const reg = await navigator.serviceWorker.getRegistration('/');
    const pushed = await reg?.pushManager.getSubscription();
    try {
      await api('DELETE', `/api/push/subscriptions/${encodeURIComponent(subscription.id)}`);
    } catch (err) {
      if (err.status !== 404) throw err; // the relay dropped it already: off is off
    }
    subscription = null;
    if (pushed) await pushed.unsubscribe();
    render();
  }

  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await (subscription ? turnOff() : turnOn());
    } catch (err) {
      showError(err.message || String(err));
    } finally {
      button.disabled = false;
    }
  });

  async function load() {
    if (!supported()) {
      status.textContent = appleWithoutInstall()
        ? 'On iPhone and iPad, notifications need the app on your Home Screen: in Safari, Share → Add to Home Screen, then open rcd from there.'
        : 'This browser cannot show notifications from web apps.';
      button.hidden = true;
      return;
    }
    try {
      const reg = await navigator.serviceWorker.getRegistration('/');
      const pushed = await reg?.pushManager.getSubscription();
      const { subscriptions } = await api('GET', '/api/push/subscriptions');
      subscription = (pushed && subscriptions.find((s) => s.endpoint === pushed.endpoint)) || null;
    } catch (err) {
      showError(err.message);
    }
    render();
  }

  load();
  return panel;
}
