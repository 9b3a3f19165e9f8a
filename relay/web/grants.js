// Approval grants ("allow Edit and Write under src for 10 minutes"): offered on a permission
// card, listed with their time left and revocable. The daemon decides and dates them by its
// own clock; what is shown here is what it last reported.

import { api } from './api.js';
import { fill, h, toast } from './dom.js';

const FILE_TOOLS = { Read: 'file_path', Edit: 'file_path', MultiEdit: 'file_path', Write: 'file_path', NotebookEdit: 'notebook_path' };
const EDITS = ['Edit', 'MultiEdit', 'Write'];
const PROTECTED = new Set(['.git', '.claude', '.mcp.json', '.envrc', '.rcd']); // daemon/grants.py
export const DURATIONS = [
  [10, '10 minutes'],
  [30, '30 minutes'],
  [60, '1 hour'],
  [240, '4 hours'],
];

export const grantsPath = (environmentId) => `/api/environments/${encodeURIComponent(environmentId)}/grants`;

/** The grant a permission card offers for `request` in a session whose directory is `cwd`:
 * edits of the file's directory, the command's first words, or the tool by name. */
export function suggestGrant(request, cwd) {
  const tool = String(request.tool ?? '');
  const input = request.input && typeof request.input === 'object' ? request.input : {};
  if (tool in FILE_TOOLS) {
    const tools = EDITS.includes(tool) ? EDITS : [tool];
    const file = input[FILE_TOOLS[tool]];
    const path = typeof file === 'string' ? directoryWithin(file, cwd) : null;
    if (path === undefined) return null; // outside the session's directory: nothing to offer
    return { tools, path, label: `${tools.join(', ')} ${path ? `under ${path}/` : 'anywhere in this session\'s directory'}` };
  }
  if (tool === 'Bash') {
    const command = typeof input.command === 'string' ? commandPrefix(input.command) : null;
    if (!command) return null;
    return { tools: ['Bash'], command, label: `commands starting "${command}"` };
  }
  return { tools: [tool], label: tool };
}

/** `file`'s directory relative to `cwd` ('' for `cwd` itself); undefined when outside it. */
function directoryWithin(file, cwd) {
  const top = String(cwd ?? '').replace(/\/+$/, '');
  if (file.startsWith('~')) return undefined;
  let relative = file;
  if (file.startsWith('/')) {
    if (!top || !(file === top || file.startsWith(`${top}/`))) return undefined;
    relative = file.slice(top.length + 1);
  }
  const parts = relative.split('/').filter((p) => p && p !== '.');
  if (parts.includes('..')) return undefined;
  // What no grant covers (the agent's settings, git's, .envrc...): nothing to offer.
  if (parts.some((p) => PROTECTED.has(p.toLowerCase()))) return undefined;
  return parts.slice(0, -1).join('/');
}

/** The first word of a simple command, and its second when it is a subcommand (`git
 * status`, `npm test`); null for a command a grant could not cover (`;`, `|`, `$`...). */
function commandPrefix(command) {
  if (/[;&|<>`$(){}\n\r]/.test(command)) return null;
  const words = command.trim().split(/\s+/);
  // Plain words only: a quoted one would need the shell's splitting to be offered right.
  if (!/^[A-Za-z0-9_./:=@%+-]+$/.test(words[0] ?? '')) return null;
  return words.length > 1 && /^[a-z][a-z0-9-]*$/.test(words[1]) ? `${words[0]} ${words[1]}` : words[0];
}

export function describeGrant(grant) {
  let what = grant.tools.join(', ');
  if (grant.path) what += ` under ${grant.path}/`;
  if (grant.command) what += ` for commands starting "${grant.command}"`;
  return what;
}

function timeLeft(grant) {
  const seconds = grant.expires_at - Date.now() / 1000;
  if (seconds <= 0) return 'ending';
  if (seconds < 60) return 'less than a minute left';
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min left` : `${Math.round(minutes / 60)} h left`;
}

/** Ask the daemon for `grant`; the grant as taken (or null when it has not answered yet). */
export async function makeGrant(environmentId, grant) {
  const made = await api('POST', grantsPath(environmentId), grant);
  return made && made.expires_at ? made : null;
}

/**
 * The grants in force for a session (`sessionId`) or a whole environment (null): each with
 * its time left and a Revoke button. `refresh()` reads them again.
 */
export class GrantsList {
  constructor(environmentId, sessionId = null) {
    this.environmentId = environmentId;
    this.sessionId = sessionId;
    this.grants = [];
    this.list = h('ul', { class: 'grants-list' });
    this.el = h('section', { class: 'grants', 'aria-label': 'Approval grants', hidden: true },
      h('div', { class: 'grants-head' }, 'Allowed without asking'), this.list);
    this.timer = setInterval(() => this.refresh(), 30_000);
  }

  close() {
    clearInterval(this.timer);
  }

  async refresh() {
    try {
      const { grants } = await api('GET', grantsPath(this.environmentId));
      this.grants = grants;
    } catch (error) {
      if (error.code === 'settings_unsupported') this.grants = [];
      else return; // shown as before; the next refresh tries again
    }
    this.render();
  }

  byId(id) {
    return this.grants.find((g) => g.id === id) ?? null;
  }

  render() {
    // The daemon's list, as it reported it (it reports again as one ends): this device's
    // clock says only how long is left, never whether one is in force.
    const shown = this.grants.filter(
      (g) => this.sessionId === null || g.session_id === null || g.session_id === this.sessionId,
    );
    this.el.hidden = shown.length === 0;
    fill(this.list, ...shown.map((grant) => {
      const revoke = h('button', { type: 'button', class: 'btn small ghost danger', onclick: () => this.revoke(grant, revoke) }, 'Revoke');
      const scope = !grant.session_id ? 'every session here' : this.sessionId ? 'this session' : 'one session';
      return h('li', { class: 'grant', dataset: { grant: grant.id } },
        h('div', { class: 'grant-what' }, describeGrant(grant)),
        h('div', { class: 'grant-meta' }, `${scope} · ${timeLeft(grant)} · by ${grant.by === 'web' ? 'the web app' : grant.by}`),
        revoke);
    }));
  }

  async revoke(grant, button) {
    button.disabled = true;
    button.textContent = 'Revoking…';
    try {
      const left = await api('DELETE', `${grantsPath(this.environmentId)}/${encodeURIComponent(grant.id)}`);
      if (left && Array.isArray(left.grants)) this.grants = left.grants;
      else this.grants = this.grants.filter((g) => g.id !== grant.id);
      this.render();
    } catch (error) {
      if (error.code === 'unknown_grant') {
        await this.refresh(); // it ended, or another device revoked it
        return;
      }
      button.disabled = false;
      button.textContent = 'Revoke';
      if (error.status !== 401) toast(error.message);
    }
  }
}

/** The "Allow for a while" part of a permission card: the offered grant, how long, and for
 * this session or every session here. `allow(grant)` asks for it and answers "allow". */
export function grantOffer(request, cwd, allow) {
  const offered = suggestGrant(request, cwd);
  if (!offered) return null;
  const minutes = h('select', { class: 'grant-minutes', 'aria-label': 'For how long' },
    DURATIONS.map(([value, label]) => h('option', { value: String(value) }, label)));
  const everywhere = h('input', { type: 'checkbox', class: 'grant-everywhere' });
  const button = h('button', { type: 'button', class: 'btn small allow-for' }, 'Allow for this long');
  button.addEventListener('click', () => {
    const grant = { tools: offered.tools, minutes: Number(minutes.value) };
    if (offered.path) grant.path = offered.path;
    if (offered.command) grant.command = offered.command;
    allow(grant, everywhere.checked, button);
  });
  return h('details', { class: 'perm-grant' },
    h('summary', null, 'Allow for a while…'),
    h('p', { class: 'grant-offer' }, `Allow ${offered.label} without asking`),
    h('div', { class: 'grant-controls' },
      minutes,
      h('label', { class: 'grant-scope' }, everywhere, ' in every session here'),
      button));
}
