// Loaded by every page (base.html) before the page's own scripts.
// Every change the pages' scripts send carries the session's CSRF token.
(() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const token = meta ? meta.content : "";
  const plain = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const method = (init.method || "GET").toUpperCase();
    if (token && !["GET", "HEAD", "OPTIONS"].includes(method)) {
      init.headers = new Headers(init.headers || {});
      init.headers.set("X-CSRF-Token", token);
    }
    return plain(input, init);
  };
  // The count of open alerts in the navigation, once per page (the alerts page keeps it current).
  document.addEventListener("DOMContentLoaded", () => {
    const badge = document.getElementById("nav-alert-badge");
    if (!badge) return;
    plain("/api/v1/alerts?status=open&limit=1").then((r) => r.json()).then((d) => {
      if (!badge.textContent) { badge.textContent = d.counts.open; badge.hidden = !d.counts.open; }
    }).catch(() => {});
  });
  // Forms that ask before they act: <form data-confirm="…">.
  document.addEventListener("submit", (e) => {
    const text = e.target.dataset && e.target.dataset.confirm;
    if (text && !window.confirm(text)) e.preventDefault();
  });
})();
