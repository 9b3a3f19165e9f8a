// rcd web app: entry point and router.
//   /          home: environments and sessions
//   /?new      the new-session form
//   /?devices  the browsers signed in, each with "sign out"
//   /?settings=<environment id>  what the environment's new sessions start with
//   /?changes=<session id>[&file=<path>]  a session's work: its files, a diff, landing it
//   /?worktree=<slug>&env=<environment id>[&file=<path>]  the same for a kept worktree
//   /s/<id>    one session, live
// Signed-in state lives in an HttpOnly cookie set by /login?code=... (a one-time link from
// `rcd relay login-link`); any 401 from the API shows the signed-out screen.

import { onSignedOut } from './api.js';
import { changesTarget, changesView } from './changes.js';
import { fill, h } from './dom.js';
import { devicesView } from './devices.js';
import { homeView, newSessionView } from './home.js';
import { interceptLinks, setRouter } from './nav.js';
import { sessionView } from './session.js';
import { settingsView } from './settings.js';

const root = document.getElementById('app');
let current = null;
let isSignedOut = false;

function route() {
  // A view that can show the new location itself (another file of the same changes) does.
  if (current && current.reroute && !isSignedOut && current.reroute()) return;
  if (current) current.destroy();
  current = null;
  if (isSignedOut) {
    showSignedOut();
    return;
  }
  window.scrollTo(0, 0);
  const match = location.pathname.match(/^\/s\/([^/]+)\/?$/);
  if (match) current = sessionView(root, decodeURIComponent(match[1]));
  else if (new URLSearchParams(location.search).has('new')) current = newSessionView(root);
  else if (new URLSearchParams(location.search).has('devices')) current = devicesView(root);
  else if (new URLSearchParams(location.search).has('settings')) {
    current = settingsView(root, new URLSearchParams(location.search).get('settings'));
  }
  else if (changesTarget(location.search)) current = changesView(root, changesTarget(location.search));
  else current = homeView(root);
}

function showSignedOut() {
  document.title = 'Signed out · rcd';
  fill(root, 
    h(
      'main',
      { class: 'center-card signed-out' },
      h('img', { class: 'hero-icon', src: '/assets/icon.svg', alt: '', width: 56, height: 56 }),
      h('h1', null, 'Signed out'),
      h('p', null, 'Open a sign-in link to use rcd in this browser. Get one with'),
      h('pre', { class: 'command' }, 'rcd relay login-link'),
      h(
        'p',
        { class: 'muted' },
        'Run it on the machine that runs the relay, then open the link it prints on this device. Each link works once, for 10 minutes.',
      ),
    ),
  );
}

onSignedOut(() => {
  if (isSignedOut) return;
  isSignedOut = true;
  route();
});
setRouter(route);
interceptLinks(document);
window.addEventListener('popstate', route);
route();
