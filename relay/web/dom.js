// Tiny DOM helpers. Every piece of text goes in as a text node or through textContent:
// nothing in this app ever assigns innerHTML, so agent output can never become markup.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'open', 'selected']);

/** h('div', {class: 'x', onclick: fn, dataset: {seq: 3}}, 'text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) setProp(el, key, value);
  }
  append(el, children);
  return el;
}

function setProp(el, key, value) {
  if (value === undefined || value === null || value === false) return;
  if (key === 'class') el.className = value;
  else if (key === 'text') el.textContent = String(value);
  else if (key === 'dataset') {
    for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
  } else if (key.startsWith('on') && typeof value === 'function') {
    el.addEventListener(key.slice(2).toLowerCase(), value);
  } else if (PROPERTIES.has(key)) el[key] = value;
  else if (key === 'innerHTML' || key === 'outerHTML' || key === 'style') {
    throw new Error(`h(): ${key} is not allowed`);
  } else el.setAttribute(key, value === true ? '' : String(value));
}

/** Replace an element's children (skipping null/false, like h()). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Append children: nodes as they are, anything else as text. Nested arrays are flattened. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A filesystem path as text that may wrap after each "/" (never mid-name if it fits). */
export function pathText(path) {
  const parts = [];
  String(path).split('/').forEach((part, i) => {
    if (i > 0) parts.push('/', document.createElement('wbr'));
    if (part) parts.push(part);
  });
  return parts;
}

/** The last component of a path ("/home/me/project" → "project"). */
export function basename(path) {
  const parts = String(path).split('/').filter(Boolean);
  return parts.length ? parts[parts.length - 1] : String(path);
}

export const STATE_LABELS = {
  queued: 'queued',
  starting: 'starting',
  idle: 'idle',
  busy: 'busy',
  awaiting_permission: 'needs approval',
  ending: 'ending',
  ended: 'ended',
  disconnected: 'machine offline',
};

/** The session-state badge; `setBadge` updates one in place. */
export function badge(state) {
  const el = h('span', { class: 'badge' });
  setBadge(el, state);
  return el;
}

export function setBadge(el, state) {
  el.className = `badge state-${state}`;
  el.dataset.state = state;
  el.textContent = STATE_LABELS[state] ?? state;
}

/** The online dot: green (online) or grey (offline), labelled for screen readers. */
export function onlineDot(online) {
  const label = online ? 'online' : 'offline';
  return h('span', { class: `dot ${label}`, role: 'img', 'aria-label': label, title: label });
}

export function ago(seconds) {
  const diff = Date.now() / 1000 - seconds;
  if (diff < 45) return 'just now';
  if (diff < 3600) return `${Math.max(1, Math.round(diff / 60))} min ago`;
  if (diff < 86400) return `${Math.round(diff / 3600)} h ago`;
  if (diff < 7 * 86400) return `${Math.round(diff / 86400)} d ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

export function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** A random UUID; crypto.randomUUID only exists in secure contexts (HTTPS, localhost). */
export function uuid() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** A short-lived message at the bottom of the screen (errors by default). */
export function toast(message, kind = 'error') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h('div', { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}
