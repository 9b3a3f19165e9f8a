// A session's work (/?changes=<session id>) or a kept worktree's (/?worktree=<slug>&env=<id>):
// what changed since it started, one file's diff (&file=<path>), and the actions that land
// it (commit, merge, push) or throw it away (discard). The daemon runs git for each call, so
// an answer takes a moment: an action shows it is working and cannot be sent twice.
// Paths are only text: a control character in a name is shown escaped ("\n").

import { api, sessionPath } from './api.js';
import { fill, h, pathText, uuid } from './dom.js';

const STATUS_LABELS = {
  added: 'added',
  modified: 'modified',
  deleted: 'deleted',
  renamed: 'renamed',
  copied: 'copied',
  type_changed: 'type changed',
};
const WORKING = { commit: 'Committing…', merge: 'Merging…', push: 'Pushing…', discard: 'Discarding…' };
/** Session states in which an agent is there to ask. */
const RUNNING = new Set(['queued', 'starting', 'idle', 'busy', 'awaiting_permission']);
/** Refusals that mean there is nothing (left) to review. */
const NOTHING_THERE = new Set(['workspace_gone', 'not_started', 'not_changed', 'not_here']);
const ASK_TO_COMMIT =
  'Please commit all of your work in this directory now (git add, then git commit) with a descriptive commit message that says what changed and why.';
/** From this width the file list and the diff sit side by side (as in app.css). */
const WIDE = '(min-width: 1000px)';

/** The app's URL of a workspace's changes, `file` open when given. */
export function changesHref(target, file = null) {
  const params = target.sessionId
    ? { changes: target.sessionId }
    : { worktree: target.slug, env: target.environmentId };
  if (file !== null) params.file = file;
  return `/?${new URLSearchParams(params)}`;
}

/** The workspace a location's query names ({sessionId} or {environmentId, slug}), or null. */
export function changesTarget(search) {
  const params = new URLSearchParams(search);
  if (params.has('changes')) return { sessionId: params.get('changes') };
  if (params.has('worktree') && params.has('env')) {
    return { environmentId: params.get('env'), slug: params.get('worktree') };
  }
  return null;
}

function sameTarget(a, b) {
  return a.sessionId === b.sessionId && a.environmentId === b.environmentId && a.slug === b.slug;
}

const CONTROL = /[\u0000-\u001f\u007f]/g;
const ESCAPES = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };

/** A path as text that wraps after each "/", with each control character (a newline in a
 * name) shown escaped as git quotes it ("\n"), marked so it cannot pass for the text. */
export function shownPath(path) {
  return pathText(path).flatMap((part) => (typeof part === 'string' ? visibleControls(part) : [part]));
}

function visibleControls(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(CONTROL)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    const c = match[0];
    const escaped = ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    parts.push(h('span', { class: 'ctl', title: 'a control character in the name' }, escaped));
    last = match.index + 1;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

/** Bytes as the daemon writes them in summaries: "6 B", "2.5 KB", "5.0 MB". */
export function sizeText(size) {
  if (size === null || size === undefined) return 'none';
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / (1024 * 1024)).toFixed(1)} MB`;
}

const short = (sha) => String(sha ?? '').slice(0, 7);
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function statusBadge(status) {
  return h('span', { class: `file-status st-${status}` }, STATUS_LABELS[status] ?? status);
}

/** "+3 −1" for a text file; its size when there is nothing to count or it is large. */
function fileStats(file) {
  const size = file.size ?? file.old_size;
  const large = Math.max(file.size ?? 0, file.old_size ?? 0) > 1024 * 1024;
  const counted = !file.binary && file.added !== null && file.removed !== null;
  return h(
    'span',
    { class: 'file-stats' },
    counted
      ? h(
          'span',
          { class: 'counts', 'aria-label': `${file.added} lines added, ${file.removed} removed` },
          h('span', { class: 'n-add' }, `+${file.added}`),
          ' ',
          h('span', { class: 'n-del' }, `\u2212${file.removed}`),
        )
      : null,
    !counted || large ? h('span', { class: 'file-size' }, `${file.binary ? 'binary · ' : ''}${sizeText(size)}`) : null,
  );
}

/** One file's hunks as a table: old and new line numbers, the sign, the text (wrapped). */
function diffTable(hunks) {
  const rows = [];
  for (const hunk of hunks) {
    rows.push(h('tr', { class: 'hunk' }, h('td', { colspan: 4 }, hunk.header)));
    let oldNo = hunk.old_start;
    let newNo = hunk.new_start;
    for (const line of hunk.lines) {
      const sign = line.charAt(0);
      if (sign === '\\') {
        rows.push(h('tr', { class: 'dl note' }, h('td', { class: 'ln' }), h('td', { class: 'ln' }), h('td', { class: 'sign' }), h('td', { class: 'code' }, line.slice(2))));
        continue;
      }
      const kind = sign === '+' ? 'add' : sign === '-' ? 'del' : 'ctx';
      const oldCell = kind === 'add' ? null : oldNo++;
      const newCell = kind === 'del' ? null : newNo++;
      rows.push(
        h(
          'tr',
          { class: `dl ${kind}` },
          h('td', { class: 'ln' }, oldCell),
          h('td', { class: 'ln' }, newCell),
          h('td', { class: 'sign' }, kind === 'ctx' ? '' : sign),
          h('td', { class: 'code' }, line.slice(1)),
        ),
      );
    }
  }
  return h('table', { class: 'diff' }, h('tbody', null, rows));
}

export function changesView(root, target) {
  let alive = true;
  let changes = null; // the last Changes shown
  let session = null; // a session's SessionInfo (a kept worktree may have none)
  let openFile = null; // the path whose diff is shown
  let diffRequest = 0;
  let listScroll = 0;
  let busy = false; // an action is on its way: every action button waits
  let draft = null; // the commit message as the user left it
  const actionButtons = new Set();
  let refused = null; // the last refusal, {action, error}: shown again after a re-render
  let dialog = null;

  const base = target.sessionId
    ? `${sessionPath(target.sessionId)}/changes`
    : `/api/environments/${encodeURIComponent(target.environmentId)}/worktrees/${encodeURIComponent(target.slug)}/changes`;
  const home = target.sessionId ? `/s/${encodeURIComponent(target.sessionId)}` : '/';

  const back = h('a', { class: 'back', href: home, 'data-nav': '', 'aria-label': 'Back' }, '‹');
  const title = h('h1', { class: 'title' }, 'Changes');
  const refreshButton = h('button', { type: 'button', class: 'btn small ghost', onclick: () => refresh() }, 'Refresh');
  const outcome = h('div', { class: 'outcome', role: 'status', hidden: true });
  const content = h('div', { class: 'changes-content' }, h('div', { class: 'skeleton' }));
  const overview = h('div', { class: 'changes-overview' }, outcome, content);
  const diffPane = h('section', { class: 'diff-pane', 'aria-label': 'Diff' });
  const main = h('main', { class: 'page changes' }, overview, diffPane);
  fill(
    root,
    h(
      'header',
      { class: 'bar' },
      h('div', { class: 'bar-inner wide' }, h('div', { class: 'bar-row' }, back, title, refreshButton)),
    ),
    main,
  );
  document.title = 'Changes · rcd';

  const running = () => session !== null && RUNNING.has(session.state);
  const proposal = () => session?.title || (changes?.branch ? `Work on ${changes.branch}` : 'Work from rcd');

  // Loading ---------------------------------------------------------------------------------

  // One read at a time: a load asked for during one runs once it is done (an action's
  // result must not be hidden by a read that started before it).
  let loading = null;
  let queued = null;
  function load() {
    if (!loading) {
      loading = read().finally(() => {
        loading = null;
      });
      return loading;
    }
    queued ??= loading.then(() => {
      queued = null;
      return load();
    });
    return queued;
  }

  /** Read the list again, and the open file's diff. */
  async function refresh() {
    if (openFile !== null) showFile(openFile, { again: true });
    await load();
  }

  async function read() {
    refreshButton.disabled = true;
    try {
      const [found, info] = await Promise.all([
        api('GET', base),
        target.sessionId ? api('GET', sessionPath(target.sessionId)).catch(() => session) : null,
      ]);
      if (!alive) return;
      session = info;
      changes = found;
      showTitle();
      render();
    } catch (error) {
      if (!alive || error.status === 401) return;
      changes = null;
      if (NOTHING_THERE.has(error.code)) {
        fill(
          content,
          h(
            'div',
            { class: 'changes-empty' },
            h('h2', null, 'Nothing left to review'),
            h('p', null, error.message),
            h('a', { class: 'btn', href: home, 'data-nav': '' }, target.sessionId ? 'Back to the session' : 'Home'),
          ),
        );
        if (openFile !== null) fill(diffPane);
      } else {
        fill(
          content,
          h('div', { class: 'inline-error', role: 'alert' }, error.message),
          h('button', { type: 'button', class: 'btn small', onclick: () => load() }, 'Try again'),
        );
      }
    } finally {
      refreshButton.disabled = false;
    }
  }

  function showTitle() {
    const name = session?.title || changes?.branch || target.slug || 'Changes';
    title.textContent = `Changes · ${name}`;
    title.title = name;
    document.title = `Changes · ${name} · rcd`;
  }

  // The overview: branch, actions, files ------------------------------------------------------

  function render() {
    const c = changes;
    actionButtons.clear();
    fill(
      content,
      h(
        'section',
        { class: 'changes-head', 'aria-label': 'Branch' },
        h('div', { class: 'branch-line mono' }, c.branch ?? 'detached HEAD', c.target && c.target !== c.branch ? ` → ${c.target}` : null),
        h(
          'div',
          { class: 'change-facts' },
          h('span', { class: 'fact' }, plural(c.commits, 'commit', 'commits')),
          c.uncommitted ? h('span', { class: 'fact uncommitted' }, 'uncommitted changes') : null,
          h('span', { class: 'fact muted' }, `since ${short(c.base)}`),
        ),
        h('div', { class: 'changes-where mono', title: c.cwd }, pathText(c.cwd)),
      ),
      actionsSection(c),
      h(
        'section',
        { class: 'changes-files', 'aria-labelledby': 'files-title' },
        h('h2', { class: 'section-title', id: 'files-title' }, `Files · ${c.files.length + c.more_files}`),
        c.files.length
          ? h('ul', { class: 'file-list' }, c.files.map(fileRow))
          : h('p', { class: 'empty' }, 'No changes since it started.'),
        c.more_files > 0 ? h('p', { class: 'more-files' }, `…and ${plural(c.more_files, 'more file', 'more files')}, not listed.`) : null,
      ),
    );
  }

  function fileRow(file) {
    return h(
      'li',
      null,
      h(
        'a',
        {
          class: 'file-row',
          href: changesHref(target, file.path),
          'data-nav': '',
          'aria-current': file.path === openFile ? 'true' : null,
          dataset: { path: file.path, status: file.status },
        },
        statusBadge(file.status),
        h(
          'span',
          { class: 'file-name' },
          h('span', { class: 'file-path mono' }, shownPath(file.path)),
          file.old_path !== null && file.old_path !== undefined
            ? h('span', { class: 'file-old mono' }, 'from ', shownPath(file.old_path))
            : null,
        ),
        fileStats(file),
      ),
    );
  }

  function markOpen() {
    for (const row of content.querySelectorAll('.file-row')) {
      if (row.dataset.path === openFile) row.setAttribute('aria-current', 'true');
      else row.removeAttribute('aria-current');
    }
  }

  function actionsSection(c) {
    const blocks = [];
    if (c.actions.includes('commit')) blocks.push(commitBlock());
    if (c.actions.includes('merge')) {
      blocks.push(actionBlock('merge', `Merge into ${c.target}`, 'primary', `Lands ${plural(c.commits, 'commit', 'commits')} on ${c.target} in the main checkout.`));
    }
    if (c.actions.includes('push')) blocks.push(actionBlock('push', `Push to ${c.remote}`, '', `Pushes ${c.branch} to ${c.remote}.`));
    if (c.actions.includes('discard') && c.discard) blocks.push(discardBlock(c));
    if (!blocks.length) {
      const why = c.files.length || c.commits ? 'Nothing to do with it now.' : 'Nothing to land.';
      return h('section', { class: 'land' }, h('p', { class: 'muted' }, why));
    }
    return h('section', { class: 'land', 'aria-label': 'Actions' }, blocks);
  }

  /** Where a refusal of `action` is shown, under its button (the last one shown again). */
  function refusalBox(action) {
    const box = h('div', { class: 'inline-error refusal', role: 'alert', hidden: true, dataset: { action } });
    if (refused?.action === action) showRefusal(box, refused.error);
    return box;
  }

  function showRefusal(box, error) {
    refused = error ? { action: box.dataset.action, error } : null;
    if (!error) {
      box.hidden = true;
      fill(box);
      return;
    }
    const files = Array.isArray(error.files) ? error.files : [];
    fill(box, h('p', null, error.message), files.length ? h('ul', { class: 'refusal-files' }, files.map((f) => h('li', { class: 'mono' }, shownPath(f)))) : null);
    box.hidden = false;
  }

  function actionButton(label, kind) {
    const button = h('button', { type: 'button', class: `btn ${kind}`, disabled: busy, dataset: { label } }, label);
    actionButtons.add(button);
    return button;
  }

  function commitBlock() {
    const field = h('textarea', {
      id: 'commit-message',
      class: 'commit-message',
      rows: 2,
      maxlength: 10000,
      value: draft ?? proposal(),
    });
    field.addEventListener('input', () => {
      draft = field.value;
    });
    const refusal = refusalBox('commit');
    const commit = actionButton('Commit', 'primary');
    commit.addEventListener('click', () => {
      if (!field.value.trim()) {
        showRefusal(refusal, { message: 'Write a commit message first.' });
        field.focus();
        return;
      }
      act('commit', { message: field.value }, commit, refusal);
    });
    let ask = null;
    if (running()) {
      ask = actionButton('Ask the agent to commit', '');
      ask.addEventListener('click', () => askToCommit(ask, refusal));
    }
    return h(
      'div',
      { class: 'land-block' },
      h('label', { class: 'field-label', for: 'commit-message' }, 'Commit message'),
      field,
      h('div', { class: 'land-row' }, commit, ask),
      h('p', { class: 'hint' }, 'Commits every uncommitted file, new ones too.'),
      refusal,
    );
  }

  function actionBlock(action, label, kind, hint) {
    const refusal = refusalBox(action);
    const button = actionButton(label, kind);
    button.addEventListener('click', () => act(action, {}, button, refusal));
    return h('div', { class: 'land-block' }, h('div', { class: 'land-row' }, button), h('p', { class: 'hint' }, hint), refusal);
  }

  function discardBlock(c) {
    const refusal = refusalBox('discard');
    const button = actionButton('Discard…', 'ghost danger');
    button.addEventListener('click', () => confirmDiscard(c, button, refusal));
    return h('div', { class: 'land-block' }, h('div', { class: 'land-row' }, button), h('p', { class: 'hint' }, `Deletes ${c.branch ?? 'the branch'} and its worktree.`), refusal);
  }

  function confirmDiscard(c, button, refusal) {
    if (busy || dialog) return;
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const confirm = h('button', { type: 'button', class: 'btn danger-solid' }, 'Discard');
    const box = h(
      'dialog',
      { class: 'confirm-dialog', 'aria-labelledby': 'discard-title' },
      h('h2', { id: 'discard-title' }, 'Discard this work?'),
      // Not the directory by name: for a kept branch whose worktree is gone, `cwd` is the
      // main checkout (where the branch is read), which a discard never touches.
      h('p', null, 'The branch ', h('span', { class: 'mono' }, c.branch ?? ''), ' and its worktree are deleted. This loses:'),
      h('p', { class: 'loss' }, c.discard.lost),
      h('p', { class: 'muted' }, 'It cannot be undone.'),
      h('div', { class: 'dialog-actions' }, cancel, confirm),
    );
    dialog = box;
    box.addEventListener('close', () => {
      box.remove();
      if (dialog === box) dialog = null;
    });
    cancel.addEventListener('click', () => box.close());
    confirm.addEventListener('click', () => {
      box.close();
      // The token names exactly the loss shown: if the work changed since, the daemon
      // refuses (confirmation_required) and the view shows the new loss.
      act('discard', { confirm: c.discard.confirm }, button, refusal);
    });
    document.body.append(box);
    box.showModal();
    cancel.focus();
  }

  function setButtons(disabled) {
    for (const button of actionButtons) button.disabled = disabled;
  }

  function showOutcome(...children) {
    fill(outcome, h('span', { class: 'outcome-mark', 'aria-hidden': 'true' }, '✓'), h('span', null, children));
    outcome.hidden = false;
  }

  /** Send `action`; true when done. The button says it is working meanwhile. */
  async function act(action, body, button, refusal) {
    if (busy) return false;
    busy = true;
    setButtons(true);
    showRefusal(refusal, null);
    outcome.hidden = true;
    fill(button, h('span', { class: 'spinner', 'aria-hidden': 'true' }), WORKING[action]);
    try {
      const landed = await api('POST', `${base}/${action}`, body);
      if (!alive) return true;
      if (action === 'commit') draft = null;
      showOutcome(landed.summary);
      await refresh();
      return true;
    } catch (error) {
      if (!alive || error.status === 401) return false;
      showRefusal(refusal, error);
      // What the view showed is out of date: show what is there now (the refusal stays).
      if (error.code === 'confirmation_required' || NOTHING_THERE.has(error.code)) await load();
      else if (!refusal.isConnected && changes) render(); // re-read meanwhile: show it anew
      return false;
    } finally {
      busy = false;
      if (alive) {
        button.textContent = button.dataset.label;
        setButtons(false);
      }
    }
  }

  async function askToCommit(button, refusal) {
    if (busy) return;
    busy = true;
    setButtons(true);
    showRefusal(refusal, null);
    fill(button, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Asking…');
    try {
      await api('POST', `${sessionPath(target.sessionId)}/messages`, { id: uuid(), text: ASK_TO_COMMIT });
      if (alive) {
        showOutcome('Asked the agent to commit its work. Its answer is in ', h('a', { href: home, 'data-nav': '' }, 'the conversation'), '; refresh here once it is done.');
      }
    } catch (error) {
      if (alive && error.status !== 401) showRefusal(refusal, error);
    } finally {
      busy = false;
      if (alive) {
        button.textContent = button.dataset.label;
        setButtons(false);
      }
    }
  }

  // One file's diff ------------------------------------------------------------------------------

  function diffHead(file) {
    return h(
      'div',
      { class: 'diff-head' },
      h('a', { class: 'all-files', href: changesHref(target), 'data-nav': '' }, '‹ All files'),
      h('h2', { class: 'diff-title mono' }, shownPath(file.path)),
      file.old_path !== null && file.old_path !== undefined ? h('div', { class: 'file-old mono' }, 'from ', shownPath(file.old_path)) : null,
      file.status ? h('div', { class: 'diff-meta' }, statusBadge(file.status), fileStats(file)) : null,
    );
  }

  function diffBody(diff) {
    if (diff.hunks === null) return h('p', { class: 'diff-summary' }, `Not shown: ${diff.summary ?? 'no text to show'}`);
    if (!diff.hunks.length) {
      return h('p', { class: 'diff-summary' }, diff.file.status === 'renamed' ? 'Renamed; the content is the same.' : 'No change to the content.');
    }
    return [
      diffTable(diff.hunks),
      diff.truncated ? h('p', { class: 'hint diff-truncated' }, 'The rest of this file\u2019s lines were left out: it changed too much to show.') : null,
    ];
  }

  /** Show `path`'s diff (null: the list); `again`: the same file read again, in place. */
  async function showFile(path, { again = false } = {}) {
    // A phone shows the list or the diff, each from its top (the list where it was left);
    // a wide screen shows both, and scrolls neither.
    const scroll = !again && !window.matchMedia(WIDE).matches;
    if (openFile === null && path !== null) listScroll = window.scrollY;
    openFile = path;
    main.classList.toggle('has-file', path !== null);
    back.setAttribute('href', path === null ? home : changesHref(target));
    back.setAttribute('aria-label', path === null ? 'Back' : 'All files');
    markOpen();
    const request = ++diffRequest;
    if (path === null) {
      fill(diffPane, h('p', { class: 'diff-placeholder muted' }, 'Pick a file to see its changes.'));
      if (scroll) window.scrollTo(0, listScroll);
      return;
    }
    if (scroll) window.scrollTo(0, 0);
    const known = changes?.files.find((f) => f.path === path) ?? { path };
    if (!again) fill(diffPane, diffHead(known), h('div', { class: 'skeleton' }));
    try {
      const diff = await api('GET', `${base}?${new URLSearchParams({ path })}`);
      if (!alive || request !== diffRequest) return;
      fill(diffPane, diffHead(diff.file), diffBody(diff));
    } catch (error) {
      if (!alive || request !== diffRequest || error.status === 401) return;
      fill(diffPane, diffHead(known), h('div', { class: 'inline-error', role: 'alert' }, error.message));
    }
  }

  load();
  showFile(new URLSearchParams(location.search).get('file'));

  return {
    /** The location changed: true when it is still this workspace (then only the open
     * file changes, without reading the list again). */
    reroute() {
      const next = changesTarget(location.search);
      if (!next || !sameTarget(next, target)) return false;
      const file = new URLSearchParams(location.search).get('file');
      if (file !== openFile) showFile(file);
      return true;
    },
    destroy() {
      alive = false;
      if (dialog) dialog.close();
    },
  };
}
