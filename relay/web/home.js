// Home (/): environments and sessions; the new-session form (/?new).

import { api, signedOut } from './api.js';
import { changesHref } from './changes.js';
import { ago, append, badge, fill, h, onlineDot, pathText } from './dom.js';
import { navigate } from './nav.js';

const REFRESH_MS = 4000;
/** Kept worktrees are read by the daemon with git: asked again at most this often, unless
 * something on the page changed (a session ended). */
const KEPT_REFRESH_MS = 30000;

function brand() {
  return h(
    'a',
    { class: 'brand', href: '/', 'data-nav': '' },
    h('img', { src: '/assets/icon.svg', alt: '', width: 28, height: 28 }),
    h('span', null, 'rcd'),
  );
}

async function signOut(button) {
  button.disabled = true;
  try {
    await api('POST', '/logout');
  } catch {
    // Signed out already, or unreachable: either way this browser forgets it.
  }
  signedOut();
}

/** Calls `load()` now and every few seconds while the page is visible, until stopped. */
function poller(load) {
  let timer = 0;
  let stopped = false;
  const tick = async () => {
    clearTimeout(timer);
    if (stopped) return;
    try {
      if (document.visibilityState !== 'hidden') await load();
    } finally {
      if (!stopped) timer = setTimeout(tick, REFRESH_MS);
    }
  };
  const onVisible = () => {
    if (document.visibilityState === 'visible') tick();
  };
  document.addEventListener('visibilitychange', onVisible);
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}

function capacity(env) {
  return h(
    'span',
    { class: 'capacity', title: 'sessions running / capacity', 'aria-label': `${env.active_sessions} of ${env.capacity} sessions` },
    `${env.active_sessions}/${env.capacity}`,
  );
}

/** Whether another environment has the same name (or the same directory under that name):
 * then only the machine tells them apart. */
function lookalike(env, environments) {
  return environments.some((other) => other.id !== env.id && other.name === env.name);
}

/** The environment's name, with its machine when another environment has the same name. */
export function environmentLabel(env, environments) {
  return lookalike(env, environments) ? `${env.name} on ${env.machine}` : env.name;
}

function environmentCard(env, environments = [], withSettings = false) {
  // The machine is always shown unless the name already says it (`dir@host`, the default);
  // marked up when another environment looks the same.
  const same = lookalike(env, environments);
  const showMachine = same || !env.name.endsWith(`@${env.machine}`);
  return h(
    'div',
    { class: 'env', dataset: { environmentId: env.id } },
    h('div', { class: 'env-line' }, onlineDot(env.online), h('span', { class: 'env-name' }, env.name), capacity(env)),
    showMachine
      ? h('div', { class: same ? 'env-machine lookalike' : 'env-machine', title: 'the machine it runs on' }, `on ${env.machine}`)
      : null,
    h('div', { class: 'env-dir mono', title: env.directory }, pathText(env.directory)),
    h(
      'div',
      { class: 'env-spawn' },
      env.online ? `${env.spawn} · online` : `${env.spawn} · offline`,
      withSettings
        ? h('a', { class: 'env-settings', href: `/?settings=${encodeURIComponent(env.id)}`, 'data-nav': '', 'aria-label': `Settings of ${env.name}` }, 'Settings')
        : null,
    ),
  );
}

function sessionRow(session, names) {
  const env = names.get(session.environment_id);
  return h(
    'a',
    { class: 'session-row', href: `/s/${encodeURIComponent(session.id)}`, 'data-nav': '', dataset: { sessionId: session.id } },
    h('div', { class: 'session-row-main' }, h('span', { class: 'session-row-title' }, session.title || 'Untitled session'), badge(session.state)),
    h(
      'div',
      { class: 'session-row-meta' },
      h('span', { class: 'session-row-where' }, [env, session.branch, session.agent].filter(Boolean).join(' · ')),
      h('span', { class: 'session-row-when' }, ago(session.updated_at)),
    ),
  );
}

/** The environments' kept worktrees (worktrees kept because they hold work): each online
 * environment is asked (never an offline one); a refusal (409: offline, a daemon without
 * changes) or any failure just shows none. */
function keptWorktrees() {
  const known = new Map(); // environment id → its kept worktrees
  const asked = new Map(); // environment id → when last asked
  const boxes = new Map(); // environment id → the section in its card
  const inFlight = new Set();
  let stopped = false;

  function render(environmentId) {
    const box = boxes.get(environmentId);
    if (!box) return;
    const worktrees = known.get(environmentId) ?? [];
    box.hidden = worktrees.length === 0;
    fill(
      box,
      worktrees.length ? h('h3', { class: 'kept-title' }, 'Kept worktrees') : null,
      worktrees.length ? h('ul', { class: 'kept-list' }, worktrees.map((w) => row(environmentId, w))) : null,
    );
  }

  function row(environmentId, worktree) {
    const target = worktree.session_id ? { sessionId: worktree.session_id } : { environmentId, slug: worktree.slug };
    const reasons = [...worktree.reasons, worktree.exists ? null : 'its directory is gone'].filter(Boolean);
    return h(
      'li',
      { class: 'kept-row', dataset: { slug: worktree.slug } },
      h(
        'div',
        { class: 'kept-main' },
        h('span', { class: 'kept-branch mono' }, worktree.branch || worktree.slug),
        h('span', { class: 'kept-reasons' }, reasons.join(' · ')),
      ),
      h('a', { class: 'btn small', href: changesHref(target), 'data-nav': '', 'aria-label': `Review ${worktree.branch || worktree.slug}` }, 'Review'),
    );
  }

  async function ask(env, force) {
    if (!env.online) {
      known.delete(env.id);
      render(env.id);
      return;
    }
    if (inFlight.has(env.id) || (!force && Date.now() - (asked.get(env.id) ?? 0) < KEPT_REFRESH_MS)) return;
    inFlight.add(env.id);
    asked.set(env.id, Date.now());
    try {
      const { worktrees } = await api('GET', `/api/environments/${encodeURIComponent(env.id)}/worktrees`);
      known.set(env.id, worktrees);
    } catch {
      known.delete(env.id);
    } finally {
      inFlight.delete(env.id);
    }
    if (!stopped) render(env.id);
  }

  return {
    /** The section for an environment's card (filled now from what is known). */
    box(environmentId) {
      const box = h('div', { class: 'kept', hidden: true });
      boxes.set(environmentId, box);
      render(environmentId);
      return box;
    },
    /** Drop the sections of cards no longer shown. */
    clear() {
      boxes.clear();
    },
    /** Ask the environments (`force`: now, not after the usual while). */
    refresh(environments, force) {
      for (const env of environments) ask(env, force);
    },
    stop() {
      stopped = true;
    },
  };
}

export function homeView(root) {
  const envList = h('div', { class: 'env-list' }, h('div', { class: 'skeleton' }));
  const sessionList = h('div', { class: 'session-list' }, h('div', { class: 'skeleton' }));
  const loadError = h('div', { class: 'inline-error', role: 'alert', hidden: true });
  const signOutButton = h('button', { type: 'button', class: 'btn small ghost', onclick: () => signOut(signOutButton) }, 'Sign out');
  const devicesLink = h('a', { class: 'btn small ghost', href: '/?devices', 'data-nav': '' }, 'Signed-in devices');
  fill(root, 
    h(
      'header',
      { class: 'bar' },
      h('div', { class: 'bar-inner' }, h('div', { class: 'bar-row' }, brand(), h('div', { class: 'bar-actions' }, devicesLink, signOutButton))),
    ),
    h(
      'main',
      { class: 'page home' },
      loadError,
      h('section', { class: 'block', 'aria-labelledby': 'envs-title' }, h('h2', { class: 'section-title', id: 'envs-title' }, 'Environments'), envList),
      h('button', { type: 'button', class: 'btn primary wide', onclick: () => navigate('/?new') }, h('span', { 'aria-hidden': 'true', class: 'plus' }, '+'), 'New session'),
      h('section', { class: 'block', 'aria-labelledby': 'sessions-title' }, h('h2', { class: 'section-title', id: 'sessions-title' }, 'Sessions'), sessionList),
    ),
  );
  document.title = 'rcd';

  const kept = keptWorktrees();
  let shown = '';
  const stop = poller(async () => {
    let environments, sessions;
    try {
      [{ environments }, { sessions }] = await Promise.all([api('GET', '/api/environments'), api('GET', '/api/sessions')]);
    } catch (error) {
      if (error.status !== 401) {
        loadError.textContent = error.message;
        loadError.hidden = false;
      }
      return;
    }
    loadError.hidden = true;
    const key = JSON.stringify([environments, sessions.map((s) => [s.id, s.title, s.state, s.branch, ago(s.updated_at)])]);
    // Something changed (a session ended, a machine came online): its kept worktrees may have.
    kept.refresh(environments, key !== shown);
    if (key === shown) return;
    shown = key;
    kept.clear();
    fill(envList, 
      ...(environments.length
        ? environments.map((e) => append(environmentCard(e, environments, true), [kept.box(e.id)]))
        : [h('div', { class: 'empty' }, 'No environments yet. Run ', h('code', null, 'rcd start'), ' in a project on your machine.')]),
    );
    const names = new Map(environments.map((e) => [e.id, environmentLabel(e, environments)]));
    fill(sessionList, 
      ...(sessions.length
        ? sessions.map((s) => sessionRow(s, names))
        : [h('div', { class: 'empty' }, 'No sessions yet. Start one with “New session”.')]),
    );
  });
  return {
    destroy() {
      stop();
      kept.stop();
    },
  };
}

const SPAWN_CHOICES = [
  ['', 'Default'],
  ['same-dir', 'Same dir'],
  ['worktree', 'Worktree'],
];

export function newSessionView(root) {
  let environments = [];
  let selected = null;
  let busy = false;

  const envChoices = h('div', { class: 'choices' }, h('div', { class: 'skeleton' }));
  const spawnInputs = SPAWN_CHOICES.map(([value]) => h('input', { type: 'radio', name: 'spawn', value, checked: value === '' }));
  const defaultHint = h('span', { class: 'seg-hint' });
  const spawnChoices = h(
    'div',
    { class: 'segmented' },
    SPAWN_CHOICES.map(([value, label], i) =>
      h('label', { class: 'seg' }, spawnInputs[i], h('span', { class: 'seg-label' }, label, value === '' ? defaultHint : null)),
    ),
  );
  // The agents the selected environment's daemon allows (rcd start --allow-agent): a
  // choice only when there is more than one.
  const agentSelect = h('select', { id: 'agent', class: 'agent-select', 'aria-label': 'Agent' });
  const agentField = h('fieldset', { hidden: true }, h('legend', null, 'Agent'), agentSelect);
  const agentsOf = new Map(); // environment id → its agents (the default first)
  const prompt = h('textarea', {
    id: 'first-prompt',
    name: 'prompt',
    rows: 5,
    placeholder: 'What should the agent do?',
    enterkeyhint: 'enter',
  });
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary wide' }, 'Start session');
  const form = h(
    'form',
    { class: 'page form', onsubmit: start, novalidate: true },
    h('fieldset', null, h('legend', null, 'Environment'), envChoices),
    h('fieldset', null, h('legend', null, 'Spawn mode'), spawnChoices),
    agentField,
    h('label', { class: 'field-label', for: 'first-prompt' }, 'First prompt'),
    prompt,
    h(
      'p',
      { class: 'hint' },
      'Leave it empty to start an idle session.',
      h('span', { class: 'keyboard-only' }, ' ', h('kbd', null, 'Ctrl'), '+', h('kbd', null, 'Enter'), ' starts it.'),
    ),
    error,
    submit,
  );
  prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  fill(root, 
    h(
      'header',
      { class: 'bar' },
      h('div', { class: 'bar-inner' }, h('div', { class: 'bar-row' }, h('a', { class: 'back', href: '/', 'data-nav': '', 'aria-label': 'Back' }, '‹'), h('h1', { class: 'title' }, 'New session'))),
    ),
    form,
  );
  document.title = 'New session · rcd';

  function renderChoices() {
    if (!environments.length) {
      fill(envChoices, h('div', { class: 'empty' }, 'No environments yet. Run ', h('code', null, 'rcd start'), ' in a project on your machine.'));
      return;
    }
    if (!environments.some((e) => e.id === selected)) {
      const best = environments.find((e) => e.online && e.active_sessions < e.capacity) ?? environments.find((e) => e.online) ?? environments[0];
      selected = best.id;
    }
    fill(envChoices, 
      ...environments.map((env) => {
        const radio = h('input', { type: 'radio', name: 'environment', value: env.id, checked: env.id === selected });
        radio.addEventListener('change', () => {
          selected = env.id;
          showDefault();
        });
        return h('label', { class: 'choice' }, radio, environmentCard(env, environments));
      }),
    );
    showDefault();
  }

  function showDefault() {
    const env = environments.find((e) => e.id === selected);
    defaultHint.textContent = env ? ` (${env.spawn})` : '';
    showAgents();
  }

  async function showAgents() {
    const id = selected;
    if (id && !agentsOf.has(id)) {
      agentsOf.set(id, []);
      try {
        const view = await api('GET', `/api/environments/${encodeURIComponent(id)}/settings`);
        agentsOf.set(id, Array.isArray(view.agents) ? view.agents : []);
      } catch {
        agentsOf.delete(id); // an older daemon, or offline: its one agent; asked again later
      }
    }
    if (id !== selected) return;
    const agents = agentsOf.get(id) ?? [];
    agentField.hidden = agents.length < 2;
    const picked = agentSelect.value; // kept when the list is drawn again (a poll)
    fill(agentSelect, ...agents.map((name, i) => h('option', { value: i ? name : '' }, i ? name : `${name} (default)`)));
    if (agents.slice(1).includes(picked)) agentSelect.value = picked;
  }

  // The form works at once; a submit before the environments arrive waits for them.
  let markLoaded;
  const loaded = new Promise((resolve) => {
    markLoaded = resolve;
  });
  let shown = '';
  const stop = poller(async () => {
    try {
      ({ environments } = await api('GET', '/api/environments'));
    } catch {
      return;
    }
    markLoaded();
    const key = JSON.stringify(environments);
    if (key !== shown) {
      shown = key;
      renderChoices();
    }
  });

  async function start(event) {
    event.preventDefault();
    if (busy) return;
    busy = true;
    submit.disabled = true;
    submit.textContent = 'Starting…';
    error.hidden = true;
    try {
      await loaded;
      await create();
    } finally {
      busy = false;
      submit.disabled = false;
      submit.textContent = 'Start session';
    }
  }

  async function create() {
    if (!selected) {
      showError('Pick an environment first.');
      return;
    }
    const body = {};
    if (prompt.value.trim()) body.prompt = prompt.value;
    const spawn = spawnInputs.find((i) => i.checked)?.value;
    if (spawn) body.spawn = spawn;
    if (!agentField.hidden && agentSelect.value) body.agent = agentSelect.value;
    try {
      const session = await api('POST', `/api/environments/${encodeURIComponent(selected)}/sessions`, body);
      navigate(`/s/${encodeURIComponent(session.id)}`, { replace: true });
    } catch (err) {
      if (err.status === 401) return;
      const headline = { at_capacity: 'At capacity', environment_offline: 'Environment offline', agent_not_allowed: 'Agent not allowed' }[err.code];
      showError(err.message, headline);
    }
  }

  function showError(message, headline) {
    fill(error, headline ? h('strong', null, `${headline}: `) : null, message);
    error.hidden = false;
  }

  return { destroy: stop };
}
