// The sources pages (信源): the add form with its test fetch, and the source page's actions.
// Everything goes through the JSON API; collected data is shown with textContent only.
(() => {
  const textBlock = document.getElementById("sources-text");
  const T = textBlock ? JSON.parse(textBlock.textContent) : {};
  const fill = (template, values) =>
    Object.entries(values).reduce((s, [k, v]) => s.split(`{${k}}`).join(String(v)), template);
  const show = (el, text) => { if (el) { el.textContent = text || ""; el.hidden = !text; } };

  async function call(url, method, body) {
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return {ok: false, status: 0, data: {error: T.network}};
    }
    const data = await response.json().catch(() => ({}));
    return {ok: response.ok, status: response.status, data};
  }

  // --- the add form (/sources/new) ---------------------------------------------------------
  const form = document.getElementById("source-form");
  if (form) {
    const kind = form.elements.kind;
    const status = document.getElementById("form-status");
    const saveError = document.getElementById("save-error");
    let lastGood = null;  // the draft whose test fetch succeeded: saving it needs no second test

    // Show only the fields of the chosen kind.
    const relabel = () => {
      document.querySelectorAll("[data-kinds]").forEach((el) => {
        el.hidden = !el.dataset.kinds.split(" ").includes(kind.value);
      });
    };
    kind.addEventListener("change", relabel);
    relabel();

    const words = (value) => value.split(/[\n,，、]+/).map((w) => w.trim()).filter(Boolean);
    const visible = (name) => {
      const el = form.elements[name];
      return el && !el.closest("[hidden]");
    };

    // The draft as the API takes it; throws with a message a person understands.
    function draft() {
      const value = (name) => (visible(name) ? form.elements[name].value.trim() : "");
      let config = {};
      if (value("config")) {
        try {
          config = JSON.parse(value("config"));
        } catch (e) {
          throw new Error(T.badJson + e.message);
        }
        if (!config || typeof config !== "object" || Array.isArray(config)) {
          throw new Error(T.badJson + value("config").slice(0, 60));
        }
      }
      const fields = {};
      if (value("preset")) fields.preset = value("preset");
      if (value("keywords")) fields.keywords = words(value("keywords"));
      if (value("item_selector")) fields.item_selector = value("item_selector");
      if (value("next_selector")) fields.next_selector = value("next_selector");
      return {
        name: form.elements.name.value.trim(),
        kind: kind.value,
        url: value("url") || null,
        config: Object.assign(fields, config),
        interval: value("interval") || "15m",
        hot_interval: value("hot_interval") || "1m",
        region: form.elements.region.value.trim() || null,
        timezone: form.elements.timezone.value.trim() || null,
        enabled: form.elements.enabled.checked,
      };
    }
    const sameTest = (d) => JSON.stringify([d.kind, d.url, d.config, d.timezone]);

    function renderPreview(result) {
      const card = document.getElementById("preview-card");
      const body = document.querySelector("#preview-list tbody");
      card.hidden = false;
      body.replaceChildren();
      show(document.getElementById("preview-count"),
        fill(T.found, {n: result.count || 0, errors: result.errors || 0}));
      show(document.getElementById("preview-error"), result.error ? T.failed + result.error : "");
      for (const item of result.items || []) {
        const tr = document.createElement("tr");
        const cells = item.error
          ? [T.unreadable + item.error, "", "", ""]
          : [item.title || T.untitled, item.published_local || "",
             item.author || "", item.text || ""];
        if (item.error) tr.className = "item-error";
        cells.forEach((text, i) => {
          const td = document.createElement("td");
          if (i === 0 && item.url && /^https?:\/\//i.test(item.url)) {
            const a = document.createElement("a");
            a.href = item.url;
            a.rel = "noopener noreferrer nofollow";
            a.target = "_blank";
            a.textContent = text;
            td.append(a);
          } else {
            td.textContent = text;
          }
          tr.append(td);
        });
        body.append(tr);
      }
    }

    document.getElementById("test-btn").addEventListener("click", async () => {
      show(saveError, "");
      let d;
      try { d = draft(); } catch (e) { show(saveError, e.message); return; }
      show(status, T.testing);
      const r = await call("/api/v1/sources/preview", "POST",
        {kind: d.kind, url: d.url, config: d.config, timezone: d.timezone});
      show(status, "");
      if (!r.ok) {
        renderPreview({items: [], error: r.data.error || String(r.status)});
        return;
      }
      renderPreview(r.data);
      lastGood = r.data.ok ? sameTest(d) : null;
    });

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      show(saveError, "");
      let d;
      try { d = draft(); } catch (err) { show(saveError, err.message); return; }
      d.check = sameTest(d) !== lastGood;
      show(status, T.saving);
      const r = await call("/api/v1/sources", "POST", d);
      show(status, "");
      if (!r.ok) {
        show(saveError, T.saveFailed + (r.data.error || r.status));
        return;
      }
      if (r.data.push_token) {
        form.hidden = true;
        document.getElementById("token-box").hidden = false;
        document.getElementById("token-value").textContent = r.data.push_token;
        document.getElementById("token-usage").textContent =
          fill(T.usage, {url: `/api/v1/sources/${r.data.id}/posts`});
        document.getElementById("token-source-link").href = `/sources/${r.data.id}`;
        return;
      }
      window.location.assign(`/sources/${r.data.id}`);
    });
  }

  // --- the source page's actions (/sources/{id}) -------------------------------------------
  const FLASH = "tf-source-flash";
  const flash = document.getElementById("flash");
  if (flash && sessionStorage.getItem(FLASH)) {
    const saved = JSON.parse(sessionStorage.getItem(FLASH));
    sessionStorage.removeItem(FLASH);
    show(saved.bad ? document.getElementById("action-error") : flash, saved.text);
  }
  const actionError = document.getElementById("action-error");

  function body(f) {
    const out = {};
    for (const el of f.elements) {
      if (!el.name) continue;
      if ("number" in el.dataset) out[el.name] = Number(el.value);
      else if ("boolean" in el.dataset) out[el.name] = el.value === "true";
      else out[el.name] = el.value.trim();
    }
    return out;
  }

  function outcome(f, data) {
    if (f.dataset.done !== "fetched") return T[f.dataset.done] || T.saved;
    if (data.running) return T.running;
    if (!data.ok) return T.fetchFailed + (data.error || "");
    return fill(T.fetched, {read: data.read, stored: data.stored, dup: data.duplicates});
  }

  document.querySelectorAll("form[data-api]").forEach((f) => {
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (f.dataset.ask && !window.confirm(f.dataset.ask)) return;
      show(actionError, "");
      const buttons = f.querySelectorAll("button");
      buttons.forEach((b) => { b.disabled = true; });
      if (f.dataset.busy) show(flash, T[f.dataset.busy]);
      const r = await call(f.dataset.api, f.dataset.method || "POST", body(f));
      buttons.forEach((b) => { b.disabled = false; });
      if (!r.ok) {
        show(flash, "");
        show(actionError, T.failed + (r.data.error || r.status));
        return;
      }
      if (f.dataset.result === "token") {
        document.getElementById("token-box").hidden = false;
        document.getElementById("token-value").textContent = r.data.push_token;
        show(flash, T.token);
        return;
      }
      const bad = f.dataset.done === "fetched" && !r.data.running && !r.data.ok;
      sessionStorage.setItem(FLASH, JSON.stringify({text: outcome(f, r.data), bad}));
      window.location.reload();
    });
  });
})();
