// An environment's settings (/?settings=<environment id>): what its new sessions start with,
// kept by its daemon. Variables are shown by name only: their values go one way, to the
// daemon. A setting the daemon's command line gives is shown pinned and cannot be changed.

import { api } from './api.js';
import { ago, fill, h } from './dom.js';
import { GrantsList } from './grants.js';

const MODES = [
  ['default', 'Ask for each tool (default)'],
  ['acceptEdits', 'Accept file edits'],
  ['plan', 'Plan only'],
  ['dontAsk', 'Refuse what is not allowed'],
];
const FLAGS = {
  spawn: '--spawn',
  capacity: '--capacity',
  sandbox: '--sandbox / --no-sandbox',
  sandbox_allow_hosts: '--sandbox-allow-host',
};

const lines = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean);

export function settingsView(root, environmentId) {
  let alive = true;
  const path = `/api/environments/${encodeURIComponent(environmentId)}/settings`;
  const title = h('h1', { class: 'title' }, 'Settings');
  const status = h('div', { class: 'settings-status', role: 'status' });
  const error = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  const body = h('div', { class: 'settings-body' }, h('div', { class: 'skeleton' }));
  fill(
    root,
    h(
      'header',
      { class: 'bar' },
      h('div', { class: 'bar-inner' }, h('div', { class: 'bar-row' }, h('a', { class: 'back', href: '/', 'data-nav': '', 'aria-label': 'Back' }, '‹'), title)),
    ),
    h(
      'main',
      { class: 'page settings' },
      h('p', { class: 'hint' }, 'New sessions of this environment start with these; sessions already running keep theirs. Its daemon keeps them.'),
      error,
      status,
      body,
    ),
  );
  document.title = 'Settings · rcd';

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  let lastUpdate = null;

  async function save(update, what) {
    showError('');
    status.textContent = `Saving ${what}…`;
    try {
      const view = await api('PUT', path, update);
      if (!alive) return;
      render(view);
      // A view the daemon has not answered with yet is the one before (202).
      status.textContent = view.last_update !== lastUpdate ? `Saved ${what}.` : `Sent ${what}; the daemon has not applied it yet.`;
      lastUpdate = view.last_update;
    } catch (err) {
      if (!alive || err.status === 401) return;
      status.textContent = '';
      showError(err.message);
    }
  }

  function pinnedNote(view, setting) {
    return view.pinned.includes(setting)
      ? h('p', { class: 'pinned' }, "Set by the daemon's command line (", h('code', { class: 'nowrap' }, `rcd start ${FLAGS[setting]}`), '): change it there.')
      : null;
  }

  function section(label, ...children) {
    return h('section', { class: 'settings-section' }, h('h2', { class: 'field-label' }, label), ...children);
  }

  function variables(view) {
    const name = h('input', { id: 'var-name', class: 'text-input', autocomplete: 'off', spellcheck: 'false', placeholder: 'NAME' });
    const value = h('input', { id: 'var-value', class: 'text-input', type: 'password', autocomplete: 'new-password', placeholder: 'value' });
    const add = h('button', { type: 'submit', class: 'btn small' }, 'Set');
    const form = h(
      'form',
      { class: 'var-form', novalidate: true },
      h('label', { class: 'sr-only', for: 'var-name' }, 'Variable name'),
      name,
      h('label', { class: 'sr-only', for: 'var-value' }, 'Variable value'),
      value,
      add,
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!name.value.trim()) return;
      save({ env: { [name.value.trim()]: value.value } }, name.value.trim());
    });
    const rows = view.env_names.map((n) => {
      const remove = h('button', { type: 'button', class: 'btn small ghost', 'aria-label': `Remove ${n}` }, 'Remove');
      remove.addEventListener('click', () => save({ env: { [n]: null } }, n));
      return h('li', { class: 'var', dataset: { name: n } }, h('code', { class: 'var-name' }, n), h('span', { class: 'var-value' }, '••••••'), remove);
    });
    return section(
      'Environment variables',
      rows.length ? h('ul', { class: 'var-list' }, ...rows) : h('p', { class: 'muted' }, 'None set.'),
      form,
      h('p', { class: 'hint' }, 'Values are sent to the daemon and never shown again, here or anywhere.'),
    );
  }

  function choice(view, setting, label, options) {
    const select = h('select', { id: `set-${setting}`, disabled: view.pinned.includes(setting) });
    for (const [value, text] of options) select.append(h('option', { value, selected: view[setting] === value }, text));
    select.addEventListener('change', () => save({ [setting]: select.value }, label.toLowerCase()));
    return section(label, h('label', { class: 'sr-only', for: select.id }, label), select, pinnedNote(view, setting));
  }

  function tools(view) {
    const box = h('textarea', { id: 'set-tools', rows: 3, spellcheck: 'false', placeholder: 'Bash(git status)\nRead' }, view.allowed_tools.join('\n'));
    const button = h('button', { type: 'button', class: 'btn small' }, 'Save tools');
    button.addEventListener('click', () => save({ allowed_tools: lines(box.value) }, 'the tools'));
    return section('Tools allowed without asking', h('label', { class: 'sr-only', for: 'set-tools' }, 'Tools allowed without asking'), box, h('p', { class: 'hint' }, 'One rule per line, as in Claude Code: Bash(npm test), Edit.'), button);
  }

  function sandbox(view) {
    const pinned = view.pinned.includes('sandbox');
    const box = h('input', { id: 'set-sandbox', type: 'checkbox', checked: view.sandbox, disabled: pinned });
    box.addEventListener('change', () => save({ sandbox: box.checked }, 'the sandbox'));
    const hostsPinned = view.pinned.includes('sandbox_allow_hosts');
    const hosts = h('textarea', { id: 'set-hosts', rows: 2, spellcheck: 'false', disabled: hostsPinned, placeholder: 'registry.npmjs.org' }, view.sandbox_allow_hosts.join('\n'));
    const button = h('button', { type: 'button', class: 'btn small', disabled: hostsPinned }, 'Save hosts');
    button.addEventListener('click', () => save({ sandbox_allow_hosts: lines(hosts.value) }, 'the hosts'));
    return section(
      'Sandbox',
      h('label', { class: 'check' }, box, ' Sandbox the agent: it writes only in its session\u2019s directory and reaches only these hosts'),
      pinnedNote(view, 'sandbox'),
      h('label', { class: 'sr-only', for: 'set-hosts' }, 'Allowed hosts'),
      hosts,
      pinnedNote(view, 'sandbox_allow_hosts'),
      button,
    );
  }

  function capacity(view) {
    const pinned = view.pinned.includes('capacity');
    const input = h('input', { id: 'set-capacity', class: 'text-input narrow', type: 'number', min: 1, value: view.capacity, disabled: pinned });
    const button = h('button', { type: 'button', class: 'btn small', disabled: pinned }, 'Save');
    button.addEventListener('click', () => save({ capacity: Number(input.value) }, 'the capacity'));
    return section('Capacity', h('label', { class: 'sr-only', for: 'set-capacity' }, 'Capacity'), h('div', { class: 'row' }, input, button), h('p', { class: 'hint' }, 'Lowering it never ends a running session.'), pinnedNote(view, 'capacity'));
  }

  function changes(view) {
    if (!view.changes.length) return null;
    return section(
      'Changes',
      h('ul', { class: 'change-list' }, ...view.changes.slice(-10).reverse().map((c) => h('li', null, `${c.changed.join(', ')} · by ${c.by} · ${ago(c.at)}`))),
    );
  }

  function render(view) {
    fill(
      body,
      variables(view),
      choice(view, 'permission_mode', 'Permission mode', MODES),
      tools(view),
      choice(view, 'spawn', 'Spawn mode', [['same-dir', 'In the project directory'], ['worktree', 'In a git worktree of its own']]),
      sandbox(view),
      capacity(view),
      grants.el,
      changes(view),
    );
    grants.grants = view.grants ?? [];
    grants.render();
  }

  async function load() {
    try {
      const [view, { environments }] = await Promise.all([api('GET', path), api('GET', '/api/environments')]);
      if (!alive) return;
      const env = environments.find((e) => e.id === environmentId);
      if (env) {
        title.textContent = `Settings · ${env.name}`;
        document.title = `Settings · ${env.name} · rcd`;
      }
      lastUpdate = view.last_update;
      render(view);
    } catch (err) {
      if (!alive || err.status === 401) return;
      fill(body);
      showError(err.message);
    }
  }

  // The approval grants in force here (every session's), revocable.
  const grants = new GrantsList(environmentId, null);
  load();
  return {
    destroy() {
      alive = false;
      grants.close();
    },
  };
}
