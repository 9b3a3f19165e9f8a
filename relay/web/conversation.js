// The conversation: one DOM node per event (marked data-seq), in seq order, plus the
// user's own messages that are still pending (not yet echoed as user_message).
// All agent and tool text goes in through text nodes (dom.js): never as HTML.

import { duration, fill, h, pathText } from './dom.js';
import { grantOffer } from './grants.js';

const FENCE = /```[^\n`]*\n([\s\S]*?)```/g;
const INLINE_CODE = /`([^`\n]+)`/g;

/** Agent text with ``` fenced blocks as <pre> and `inline code` as <code>; the rest as text. */
export function richText(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(FENCE)) {
    if (match.index > last) parts.push(...inlineCode(text.slice(last, match.index).replace(/\n$/, '')));
    parts.push(h('pre', { class: 'code' }, match[1].replace(/\n$/, '')));
    last = match.index + match[0].length;
    if (text[last] === '\n') last += 1;
  }
  if (last < text.length) parts.push(...inlineCode(text.slice(last)));
  return parts;
}

function inlineCode(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(INLINE_CODE)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    parts.push(h('code', null, match[1]));
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

function show(value) {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

/** A tool's input as labelled blocks: strings raw (commands, file contents), others as JSON. */
function toolInput(input) {
  if (!input || typeof input !== 'object' || Array.isArray(input)) {
    return h('pre', { class: 'kv-value' }, show(input));
  }
  const entries = Object.entries(input);
  if (entries.length === 0) return h('div', { class: 'kv-empty' }, 'no input');
  return h(
    'div',
    { class: 'kv' },
    entries.map(([key, value]) =>
      h('div', { class: 'kv-row' }, h('div', { class: 'kv-key' }, key), h('pre', { class: 'kv-value' }, show(value))),
    ),
  );
}

/** The one-line gist of a tool call: its path, command, pattern or first short string. */
function toolGist(input) {
  if (!input || typeof input !== 'object') return '';
  for (const key of ['file_path', 'path']) {
    // The end of a path says more than its start: "…/src/app.py".
    const path = input[key];
    if (typeof path === 'string') {
      const parts = path.split('/');
      return parts.length > 3 && path.length > 32 ? `…/${parts.slice(-2).join('/')}` : path;
    }
  }
  for (const key of ['command', 'pattern', 'url', 'query', 'description']) {
    if (typeof input[key] === 'string') return input[key];
  }
  const first = Object.values(input).find((v) => typeof v === 'string');
  return first ?? '';
}

const MAX_PARTIAL_TEXT = 65536;

/**
 * What to show of the reply being written once `partial` arrives (wire.apply_partial, the
 * one rule the relay and `rcd attach` follow too): null when it is older than the last
 * event we have; a new block starts only from offset 0; a piece past the text so far, or
 * one it already holds, changes nothing.
 */
export function applyPartial(shown, partial, lastSeq) {
  const { after_seq: afterSeq, block, offset, text } = partial;
  if (![afterSeq, block, offset].every(Number.isInteger) || typeof text !== 'string') return shown;
  if (afterSeq < lastSeq) return null;
  const same = shown !== null && shown.after_seq === afterSeq && shown.block === block;
  // Offsets count characters (code points), as Python does, not UTF-16 units.
  const base = same ? shown.chars : [];
  if (offset > base.length) return same ? shown : null;
  const piece = Array.from(text);
  const end = offset + piece.length;
  if (same && end < base.length && base.slice(offset, end).join('') === text) return shown;
  const chars = base.slice(0, offset).concat(piece).slice(0, MAX_PARTIAL_TEXT);
  return {
    after_seq: afterSeq,
    block,
    kind: partial.kind === 'tool_input' ? 'tool_input' : 'text',
    name: typeof partial.name === 'string' ? partial.name : null,
    chars,
    text: chars.join(''),
  };
}

export class Timeline {
  /** onDecide(requestId, decision, card) answers a permission request; onGrant(request,
   * grant, everywhere, card, button) asks for an approval grant and answers "allow";
   * grantText(id) says what a grant allows (null when unknown). */
  constructor({ onDecide, onGrant = null, grantText = () => null }) {
    this.onDecide = onDecide;
    this.onGrant = onGrant;
    this.grantText = grantText;
    this.cwd = null; // the session's directory, for the grants a card offers
    this.grantNotes = [];
    this.events = h('div', { class: 'events' });
    this.pendingBox = h('div', { class: 'pending' });
    this.empty = h('div', { class: 'empty-conversation' }, 'Nothing here yet.');
    this.el = h('div', { class: 'timeline', role: 'log', 'aria-label': 'Conversation' }, this.empty, this.events, this.pendingBox);
    this.tools = new Map(); // tool_use id → {el, status, body}
    this.permissions = new Map(); // request_id → PermissionCard
    this.pending = new Map(); // input_id → PendingMessage
    this.scrollFrame = 0;
    this.writing = null; // the reply being written: applyPartial's value
    this.writingBox = h('div', { class: 'writing', 'aria-live': 'off' });
    this.events.after(this.writingBox);
  }

  /** A piece of the reply being written, shown below the last event until a later one. */
  partial(partial, lastSeq) {
    const shown = applyPartial(this.writing, partial, lastSeq);
    if (shown === this.writing) return;
    this.writing = shown;
    if (!shown) {
      this.writingBox.replaceChildren();
      return;
    }
    this.empty.remove();
    const stick = this.scrollFrame !== 0 || nearBottom();
    if (shown.kind === 'tool_input') {
      fill(this.writingBox, h('div', { class: 'tool writing-tool' },
        h('div', { class: 'tool-head' },
          h('span', { class: 'tool-name' }, shown.name ?? 'tool'),
          h('span', { class: 'tool-gist' }, 'writing its input…'),
          h('span', { class: 'tool-status running', 'aria-label': 'writing' })),
        h('pre', { class: 'kv-value' }, shown.text)));
    } else {
      fill(this.writingBox, h('div', { class: 'msg agent writing-text', 'aria-busy': 'true' }, shown.text));
    }
    if (stick) this.scrollToEnd();
  }

  add(event) {
    if (this.writing && event.seq > this.writing.after_seq) {
      // A later event (the finished message, an error, the turn's end) ends it.
      this.writing = null;
      this.writingBox.replaceChildren();
    }
    const node = this.render(event);
    if (node) {
      this.empty.remove();
      node.dataset.seq = String(event.seq);
      this.place(node);
    }
  }

  place(node) {
    const stick = this.scrollFrame !== 0 || nearBottom();
    this.events.append(node);
    if (stick) this.scrollToEnd();
  }

  scrollToEnd() {
    if (this.scrollFrame) return;
    this.scrollFrame = requestAnimationFrame(() => {
      this.scrollFrame = 0;
      window.scrollTo(0, document.documentElement.scrollHeight);
    });
  }

  render(event) {
    const data = event.data ?? {};
    switch (event.kind) {
      case 'user_message':
        return this.userMessage(data);
      case 'assistant_text':
        return h('div', { class: 'msg agent' }, richText(String(data.text ?? '')));
      case 'tool_use':
        return this.toolUse(data);
      case 'tool_result':
        return this.toolResult(event, data);
      case 'permission_request':
        return this.permissionRequest(data);
      case 'permission_resolved':
        return this.permissionResolved(event, data);
      case 'turn_result':
        return this.turnResult(data);
      case 'session_started':
        return h(
          'div',
          { class: 'note' },
          h('span', { class: 'note-strong' }, 'Session started'),
          ` · ${data.agent ?? 'agent'} · ${data.spawn ?? ''}`,
          data.branch ? ` · ${data.branch}` : '',
          h('div', { class: 'note-path' }, pathText(data.cwd ?? '')),
        );
      case 'session_ended':
        this.settleTools();
        this.withdrawPermissions('The session ended before this was answered.');
        return h(
          'div',
          { class: 'note ended' },
          h('span', { class: 'note-strong' }, 'Session ended'),
          data.reason ? ` · ${data.reason}` : '',
          data.worktree_kept ? ` · worktree kept${data.branch ? ` on ${data.branch}` : ''}` : '',
          Array.isArray(data.kept_reasons) && data.kept_reasons.length ? ` (${data.kept_reasons.join(', ')})` : '',
        );
      case 'error':
        return h(
          'div',
          { class: 'note error', role: 'note' },
          h('span', { class: 'note-strong' }, 'Error'),
          data.code ? ` (${data.code})` : '',
          ': ',
          String(data.message ?? ''),
        );
      case 'git_action':
        // Work landed or thrown away from a device: "merged rcd/x into main — from laptop".
        return h(
          'div',
          { class: 'note git-action', dataset: { action: String(data.action ?? '') } },
          h('span', { class: 'note-strong' }, String(data.summary ?? data.action ?? 'git')),
          data.origin ? ` — from ${data.origin === 'web' ? 'the web app' : data.origin.replace(/^web \((.*)\)$/, 'the web app on $1')}` : '',
        );
      case 'status':
        return null; // shown by the state badge
      default:
        return h('div', { class: 'note' }, `(${event.kind})`);
    }
  }

  userMessage(data) {
    const pending = this.pending.get(data.input_id);
    if (pending) {
      pending.el.remove();
      this.pending.delete(data.input_id);
    }
    const from = data.origin && data.origin !== 'web' ? h('div', { class: 'msg-origin' }, `from ${data.origin}`) : null;
    return h('div', { class: 'msg user' }, h('div', { class: 'msg-text' }, String(data.text ?? '')), from);
  }

  toolUse(data) {
    const status = h('span', { class: 'tool-status running', 'aria-label': 'running' });
    const body = h('div', { class: 'tool-body' }, h('div', { class: 'tool-label' }, 'Input'), toolInput(data.input));
    const el = h(
      'details',
      { class: 'tool' },
      h(
        'summary',
        null,
        h('span', { class: 'tool-name' }, String(data.name ?? 'tool')),
        h('span', { class: 'tool-gist' }, toolGist(data.input)),
        status,
      ),
      body,
    );
    if (data.id) this.tools.set(data.id, { el, status, body });
    return el;
  }

  toolResult(event, data) {
    const tool = this.tools.get(data.tool_use_id);
    const result = h(
      'div',
      { class: `tool-result${data.is_error ? ' is-error' : ''}` },
      h('div', { class: 'tool-label' }, data.is_error ? 'Error' : 'Result'),
      h('pre', { class: 'kv-value' }, show(data.content ?? '')),
    );
    if (!tool) {
      return h('details', { class: 'tool' }, h('summary', null, h('span', { class: 'tool-name' }, 'Tool result')), result);
    }
    tool.status.className = `tool-status ${data.is_error ? 'failed' : 'ok'}`;
    tool.status.setAttribute('aria-label', data.is_error ? 'failed' : 'done');
    result.dataset.seq = String(event.seq);
    tool.body.append(result);
    return null;
  }

  permissionRequest(data) {
    const card = new PermissionCard(data, (decision) => this.onDecide(data.request_id, decision, card));
    if (this.onGrant) {
      card.offer(grantOffer(data, this.cwd, (grant, everywhere, button) =>
        this.onGrant(data, grant, everywhere, card, button)));
    }
    this.permissions.set(data.request_id, card);
    return card.el;
  }

  permissionResolved(event, data) {
    const card = this.permissions.get(data.request_id);
    if (!card && data.origin === 'grant') {
      // Answered by an approval grant at the daemon: the agent was never stopped to ask.
      const note = h('div', { class: 'note granted', dataset: { grant: String(data.grant ?? '') } });
      this.grantNotes.push(note);
      this.describeGrant(note);
      return note;
    }
    if (!card) {
      return h('div', { class: 'note' }, `Permission ${data.decision === 'allow' ? 'allowed' : 'denied'}`);
    }
    card.resolve(data.decision, data.origin, event.seq);
    return null;
  }

  /** Say again what each grant that answered allows (once the grants are read). */
  grantsKnown() {
    for (const note of this.grantNotes) this.describeGrant(note);
  }

  describeGrant(note) {
    const what = this.grantText(note.dataset.grant);
    fill(note, h('span', { class: 'perm-mark', 'aria-hidden': 'true' }, '✓'), ' Allowed by a grant', what ? `: ${what}` : '');
  }

  withdrawPermissions(why) {
    for (const card of this.permissions.values()) card.withdraw(why);
  }

  /** Tools that never got a result (the turn was interrupted, the agent exited). */
  settleTools() {
    for (const tool of this.tools.values()) {
      if (tool.status.classList.contains('running')) {
        tool.status.className = 'tool-status stopped';
        tool.status.setAttribute('aria-label', 'no result');
      }
    }
  }

  turnResult(data) {
    this.settleTools();
    const parts = [data.ok ? 'Turn done' : 'Turn stopped'];
    if (typeof data.duration_ms === 'number') parts.push(duration(data.duration_ms));
    if (typeof data.cost_usd === 'number' && data.cost_usd > 0) parts.push(`$${data.cost_usd.toFixed(4)}`);
    return h('div', { class: `turn-end${data.ok ? '' : ' stopped'}` }, h('span', null, parts.join(' · ')));
  }

  /** Show the user's message at once; it leaves when its user_message echo arrives. */
  addPending(id, text) {
    const message = new PendingMessage(text);
    this.pending.set(id, message);
    this.empty.remove();
    this.pendingBox.append(message.el);
    this.scrollToEnd();
    return message;
  }
}

function nearBottom() {
  const doc = document.documentElement;
  return window.innerHeight + window.scrollY >= doc.scrollHeight - 120;
}

export class PendingMessage {
  constructor(text) {
    this.status = h('div', { class: 'msg-status' }, 'Sending…');
    this.el = h('div', { class: 'msg user pending', 'aria-busy': 'true' }, h('div', { class: 'msg-text' }, text), this.status);
  }

  queued() {
    fill(this.status, 'Queued');
  }

  retrying() {
    fill(this.status, 'Waiting for the relay…');
  }

  failed(message, retry) {
    this.el.classList.add('failed');
    fill(this.status, 
      `Not sent: ${message} `,
      h('button', { type: 'button', class: 'link-button', onclick: () => {
        this.el.classList.remove('failed');
        fill(this.status, 'Sending…');
        retry();
      } }, 'Retry'),
    );
  }
}

class PermissionCard {
  constructor(data, decide) {
    this.allow = h('button', { type: 'button', class: 'btn allow', onclick: () => decide('allow') }, 'Allow');
    this.deny = h('button', { type: 'button', class: 'btn deny', onclick: () => decide('deny') }, 'Deny');
    this.footer = h('div', { class: 'perm-actions' }, this.deny, this.allow);
    this.grant = null;
    this.el = h(
      'section',
      { class: 'perm', role: 'group', 'aria-label': `Permission request: ${data.tool}` },
      h(
        'div',
        { class: 'perm-head' },
        h('span', { class: 'perm-icon', 'aria-hidden': 'true' }, '!'),
        h('span', { class: 'perm-title' }, 'Allow ', h('span', { class: 'perm-tool' }, String(data.tool ?? 'tool')), '?'),
      ),
      data.description ? h('p', { class: 'perm-desc' }, String(data.description)) : null,
      h('div', { class: 'perm-input' }, toolInput(data.input)),
      this.footer,
    );
    this.done = false;
  }

  /** Add the "Allow for a while" part (grants.js), when one can be offered. */
  offer(node) {
    if (!node) return;
    this.grant = node;
    this.footer.after(node);
  }

  busy(decision) {
    this.allow.disabled = true;
    this.deny.disabled = true;
    (decision === 'allow' ? this.allow : this.deny).textContent = decision === 'allow' ? 'Allowing…' : 'Denying…';
  }

  idle() {
    if (this.done) return;
    this.allow.disabled = false;
    this.deny.disabled = false;
    this.allow.textContent = 'Allow';
    this.deny.textContent = 'Deny';
  }

  resolve(decision, origin, seq) {
    this.done = true;
    const allowed = decision === 'allow';
    this.el.classList.add('resolved', allowed ? 'allowed' : 'denied');
    const outcome = h(
      'div',
      { class: 'perm-outcome', dataset: { seq } },
      h('span', { class: 'perm-mark', 'aria-hidden': 'true' }, allowed ? '✓' : '✕'),
      allowed ? 'Allowed' : 'Denied',
      origin ? h('span', { class: 'perm-origin' }, ` · ${origin === 'web' ? 'in the web app' : `by ${origin}`}`) : null,
    );
    this.footer.replaceWith(outcome);
    this.footer = outcome;
    this.grant?.remove();
  }

  withdraw(why) {
    if (this.done) return;
    this.done = true;
    this.el.classList.add('resolved', 'withdrawn');
    const note = h('div', { class: 'perm-outcome' }, why);
    this.footer.replaceWith(note);
    this.footer = note;
    this.grant?.remove();
  }
}
