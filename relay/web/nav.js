// Client-side navigation: real links (so "open in new tab" works), routed without reloads.

let router = () => {};

export function setRouter(fn) {
  router = fn;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  router();
}

/** Route plain clicks on `<a data-nav>` in-app; modified clicks keep the browser's default. */
export function interceptLinks(root) {
  root.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[data-nav]') : null;
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.getAttribute('href'));
  });
}
