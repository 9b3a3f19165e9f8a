// The web app's service worker, served at /sw.js so that it covers the whole app. It shows
// the relay's Web Push notifications: one per session (its tag), replaced as things
// happen; a permission's has Allow and Deny, answered from the notification with the
// credential its push carried (good for that one request, an hour), without opening the
// app. Tapping a notification opens (or focuses) the app on the session. It caches
// nothing: the app always comes from the relay.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

function safeUrl(url) {
  if (typeof url !== 'string') return '/';
  try {
    const parsed = new URL(url, self.location.origin);
    return parsed.origin === self.location.origin ? parsed.pathname + parsed.search + parsed.hash : '/';
  } catch {
    return '/';
  }
}

self.addEventListener('push', (event) => {
  let note;
  try {
    note = event.data ? event.data.json() : null;
  } catch {
    note = null;
  }
  if (!note || typeof note.title !== 'string') {
    // Browsers require a notification for every push; say so plainly.
    note = { title: 'rcd', body: 'Something happened on one of your machines.', tag: 'rcd', url: '/' };
  }
  const request = note.kind === 'permission' && note.request?.answer_token ? note.request : null;
  event.waitUntil(
    self.registration.showNotification(note.title, {
      body: note.body ?? '',
      tag: note.tag ?? 'rcd',
      // A question is worth another buzz even when it replaces the session's last note.
      renotify: note.kind === 'permission',
      requireInteraction: note.kind === 'permission',
      icon: '/assets/icon.svg',
      actions: request
        ? [
            { action: 'allow', title: 'Allow' },
            { action: 'deny', title: 'Deny' },
          ]
        : [],
      data: { url: safeUrl(note.url), kind: note.kind ?? null, sessionId: note.session_id ?? null, request },
    }),
  );
});

async function quietly(title, body, tag, url) {
  await self.registration.showNotification(title, { body, tag, silent: true, data: { url: safeUrl(url) } });
}

// Allow or deny from the notification: the relay is asked with the request's own token.
async function answer(notification, decision) {
  const { sessionId, request, url } = notification.data;
  const tag = notification.tag;
  notification.close();
  let response;
  try {
    response = await fetch(
      `/api/sessions/${encodeURIComponent(sessionId)}/permissions/${encodeURIComponent(request.id)}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${request.answer_token}` },
        body: JSON.stringify({ decision }),
      },
    );
  } catch {
    await quietly('Not answered', 'The relay could not be reached: open the app to answer.', tag, url);
    return;
  }
  if (response.ok) return;
  let code = null;
  try {
    code = (await response.json()).error?.code ?? null;
  } catch {
    code = null;
  }
  if (code === 'permission_already_resolved') {
    await quietly('Already answered', `${request.tool}: answered elsewhere.`, tag, url);
  } else if (code === 'session_ended') {
    await quietly('Session ended', `${request.tool} was not run: the session has ended.`, tag, url);
  } else {
    await quietly('Not answered', 'Open the app to answer.', tag, url);
  }
}

async function open(notification) {
  notification.close();
  const url = new URL(notification.data?.url ?? '/', self.location.origin).href;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const client of windows) {
    if ('focus' in client) {
      await client.focus();
      if ('navigate' in client) await client.navigate(url);
      return;
    }
  }
  await self.clients.openWindow(url);
}

function act(notification, action) {
  if ((action === 'allow' || action === 'deny') && notification.data?.request) {
    return answer(notification, action);
  }
  return open(notification);
}

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(act(event.notification, event.action));
});

// The same as a tap on a notification's button, for the app's tests (a browser without a
// screen cannot tap one): {type: 'rcd-notification-action', tag, action}, answered with
// {done: true} once handled. Only a page of this origin can post it.
self.addEventListener('message', (event) => {
  const message = event.data;
  if (!message || message.type !== 'rcd-notification-action') return;
  event.waitUntil(
    (async () => {
      const [notification] = await self.registration.getNotifications({ tag: message.tag });
      try {
        if (notification) await act(notification, message.action);
      } finally {
        event.source?.postMessage({ type: 'rcd-notification-action-done', found: Boolean(notification) });
      }
    })(),
  );
});
