// The web app's service worker, served at /sw.js so that it covers the whole app. It shows
// the relay's Web Push notifications: one per session (its tag), replaced as things
// happen, and opens (or focuses) the app on the session when one is tapped. It caches
// nothing: the app always comes from the relay.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

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
  event.waitUntil(
    self.registration.showNotification(note.title, {
      body: note.body ?? '',
      tag: note.tag ?? 'rcd',
      // A question is worth another buzz even when it replaces the session's last note.
      renotify: note.kind === 'permission',
      requireInteraction: note.kind === 'permission',
      icon: '/assets/icon.svg',
      data: { url: typeof note.url === 'string' && note.url.startsWith('/') ? note.url : '/', kind: note.kind ?? null },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url ?? '/', self.location.origin).href;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      for (const client of windows) {
        if ('focus' in client) {
          await client.focus();
          if ('navigate' in client) await client.navigate(url);
          return;
        }
      }
      await self.clients.openWindow(url);
    })(),
  );
});
