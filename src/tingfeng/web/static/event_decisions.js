// The event page's decisions (templates/event.html): override the level (a reason is required),
// clear the override, merge another event into this one, split checked posts off. Each calls the
// events API; the page reloads to show the result, or shows the API's refusal in place.
(() => {
  const $ = (id) => document.getElementById(id);
  const block = $("event-text");
  const T = block ? JSON.parse(block.textContent) : {};

  async function post(url, payload) {
    try {
      const r = await fetch(url, {method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify(payload)});
      const body = await r.json().catch(() => ({}));
      return r.ok ? {ok: true, data: body} : {ok: false, error: body.error || `${r.status}`};
    } catch (e) {
      return {ok: false, error: T.failed};
    }
  }

  function show(target, error) {
    const text = Array.isArray(error) ? error.map((e) => e.msg || JSON.stringify(e)).join("; ")
      : typeof error === "object" ? (error.message || JSON.stringify(error)) : String(error);
    target.textContent = text;
    target.hidden = false;
  }

  const override = $("override-form");
  if (override) {
    const error = $("override-error");
    const id = override.dataset.eventId;
    override.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const res = await post(`/api/v1/events/${id}/grade`, {
        level: override.elements.level.value, reason: override.elements.reason.value.trim(),
      });
      if (!res.ok) return show(error, res.error);
      window.location.reload();
    });
    const clear = $("clear-override");
    if (clear) {
      clear.addEventListener("click", async () => {
        error.hidden = true;
        const res = await post(`/api/v1/events/${id}/grade`, {
          clear: true, reason: override.elements.reason.value.trim() || null,
        });
        if (!res.ok) return show(error, res.error);
        window.location.reload();
      });
    }
  }

  const decisionError = $("decision-error");
  const merge = $("merge-form");
  if (merge) {
    merge.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      decisionError.hidden = true;
      const res = await post(`/api/v1/events/${merge.dataset.eventId}/merge`, {
        other: Number(merge.elements.other.value), reason: merge.elements.reason.value.trim() || null,
      });
      if (!res.ok) return show(decisionError, res.error);
      window.location.assign(`/events/${res.data.event_id}`);
    });
  }

  const split = $("split-form");
  if (split) {
    split.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      decisionError.hidden = true;
      const ids = Array.from(document.querySelectorAll(".split-post:checked")).map((c) => Number(c.value));
      if (!ids.length) return show(decisionError, T.pick);
      const res = await post(`/api/v1/events/${split.dataset.eventId}/split`, {
        post_ids: ids, reason: split.elements.reason.value.trim() || null,
      });
      if (!res.ok) return show(decisionError, res.error);
      window.location.assign(`/events/${res.data.new_event_id}`);
    });
  }
})();
