// The topic editor (templates/_topic_editor.html, on /topics and /topics/{id}): the preview with
// its per-day chart and the difference against the saved version, query errors marked where they
// are, saving through the topics API. Collected posts are untrusted: they reach the page through
// textContent only, never as HTML.
(() => {
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // Deleting a topic (the topic page), asked first.
  const del = $("delete-topic");
  if (del) {
    del.addEventListener("click", async () => {
      if (!window.confirm(del.dataset.confirm || "?")) return;
      const r = await fetch(`/api/v1/topics/${del.dataset.topicId}`, {method: "DELETE"});
      if (r.ok) window.location.assign("/topics");
    });
  }

  const form = $("topic-form");
  const textBlock = $("topic-editor-text");
  if (!form || !textBlock) return;
  const T = JSON.parse(textBlock.textContent);
  const out = $("preview");
  const errorAt = $("query-error-at");
  const msg = $("save-msg");
  const query = form.elements.query;
  let chart = null;

  // "匹配 %(n)s 条" → text with the values in <strong>, whatever the language's word order.
  function fill(template, values) {
    const p = document.createDocumentFragment();
    template.split(/(%\(\w+\)s)/).forEach((part) => {
      const m = /^%\((\w+)\)s$/.exec(part);
      if (m) p.append(el("strong", values[m[1]]));
      else if (part) p.append(document.createTextNode(part));
    });
    return p;
  }

  const ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'"};
  const unescape = (s) => s.replace(/&(?:amp|lt|gt|quot|#x27|#39);/g, (e) => ENTITIES[e]);

  // The server's snippet is escaped text with <mark> around the matched words: rebuild it as
  // text nodes and <mark> elements instead of handing it to the HTML parser.
  function marked(snippet) {
    const box = el("span");
    let inside = false;
    for (const part of String(snippet || "").split(/(<mark>|<\/mark>)/)) {
      if (part === "<mark>") inside = true;
      else if (part === "</mark>") inside = false;
      else if (part) box.append(inside ? el("mark", unescape(part)) : document.createTextNode(unescape(part)));
    }
    return box;
  }

  let timeFormat = null;
  try {
    timeFormat = new Intl.DateTimeFormat(T.locale, {timeZone: T.timezone, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false});
  } catch (e) { timeFormat = null; }
  const when = (iso) => (iso && timeFormat ? timeFormat.format(new Date(iso)) : iso || "");
  const safeUrl = (u) => (typeof u === "string" && /^https?:\/\//i.test(u.trim()) ? u.trim() : null);

  function sample(s) {
    const d = el("div", null, "post");
    const meta = el("span", [when(s.published_at), s.author].filter(Boolean).join(" · "), "meta");
    d.append(meta, document.createTextNode(" "));
    if (s.title) d.append(el("strong", s.title), document.createTextNode(" "));
    d.append(marked(s.snippet_html));
    const url = safeUrl(s.url);
    if (url) {
      const a = el("a", T.original);
      a.href = url;
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      d.append(document.createTextNode(" "), a);
    }
    return d;
  }

  const samples = (list, id) => {
    const box = el("div");
    box.id = id;
    box.append(...(list.length ? list.map(sample) : [el("p", T.none, "meta")]));
    return box;
  };

  function exclusions() {
    return (form.elements.exclusions.value || "").split(/[,，、]/).map((s) => s.trim()).filter(Boolean);
  }

  function clearError() {
    errorAt.hidden = true;
    errorAt.replaceChildren();
    query.removeAttribute("aria-invalid");
  }

  // The API answers {"error": "…"} or, for a query, {"error": {"message", "position", "expected"}}.
  function showError(error) {
    let message = error;
    let position = null;
    if (Array.isArray(error)) message = error.map((e) => e.msg || JSON.stringify(e)).join("; ");
    else if (error && typeof error === "object") {
      message = error.message || JSON.stringify(error);
      position = Number.isInteger(error.position) ? error.position : null;
    }
    const p = el("p", null, "error");
    p.id = "preview-error";
    if (position !== null) {
      p.append(el("span", T.errorAt), document.createTextNode(" "));
      const chars = Array.from(query.value);
      const at = chars[position];
      errorAt.replaceChildren(
        document.createTextNode(chars.slice(0, position).join("")),
        el("mark", at === undefined ? T.end : at === " " ? "\u00a0" : at),
        document.createTextNode(chars.slice(position + 1).join("")),
      );
      errorAt.hidden = false;
      query.setAttribute("aria-invalid", "true");
      query.focus();
      // The offset counts characters; the input counts UTF-16 units.
      const start = chars.slice(0, position).join("").length;
      query.setSelectionRange(start, start + (at ? at.length : 0));
    }
    p.append(document.createTextNode(String(message)));
    if (chart) { chart.dispose(); chart = null; }
    out.replaceChildren(p);
  }

  function drawPerDay(box, perDay) {
    if (!window.echarts) { box.className = "chart-note"; box.textContent = T.noCharts; return; }
    chart = window.echarts.init(box, null, {renderer: "svg"});
    chart.setOption({
      animation: false,
      title: {text: T.perDay, textStyle: {fontSize: 13}},
      grid: {left: 40, right: 12, top: 32, bottom: 24},
      tooltip: {trigger: "axis", renderMode: "richText"},
      xAxis: {type: "category", data: perDay.map((d) => d[0])},
      yAxis: {type: "value", minInterval: 1},
      series: [{name: T.hits, type: "bar", data: perDay.map((d) => d[1]), itemStyle: {color: "#3b82f6"}}],
    });
  }

  function render(data) {
    if (chart) { chart.dispose(); chart = null; }
    const count = el("p");
    count.id = "preview-count";
    count.append(fill(T.count, {n: data.count}));
    const range = form.elements.days;
    count.append(document.createTextNode(` (${range.options[range.selectedIndex].text})`));
    if (data.partial) count.append(el("span", T.partial, "meta"));
    const parts = [count];
    const box = el("div", null, "chart");
    box.id = "preview-chart";
    parts.push(box);
    if (data.diff) {
      const d = data.diff;
      const section = el("section");
      section.id = "preview-diff";
      const head = el("p");
      head.append(fill(T.diff, {v: d.saved_version, n: d.saved_count}));
      const added = el("div", null, "added");
      added.id = "diff-added";
      const h1 = el("h4");
      h1.append(fill(T.added, {n: d.added}));
      added.append(h1, el("p", T.addedHint, "meta"), samples(d.added_samples, "diff-added-samples"));
      const removed = el("div", null, "removed");
      removed.id = "diff-removed";
      const h2 = el("h4");
      h2.append(fill(T.removed, {n: d.removed}));
      removed.append(h2, el("p", T.removedHint, "meta"), samples(d.removed_samples, "diff-removed-samples"));
      const grid = el("div", null, "diff");
      grid.append(added, removed);
      section.append(head, grid);
      parts.push(section);
    }
    parts.push(el("h4", T.samples), samples(data.samples, "preview-samples"));
    out.replaceChildren(...parts);
    drawPerDay(box, data.per_day);
  }

  function sourceIds() {
    try { return JSON.parse(form.dataset.sourceIds || "null"); } catch (e) { return null; }
  }

  async function call(url, method, payload) {
    let r;
    let data = {};
    try {
      r = await fetch(url, {method, headers: {"content-type": "application/json"}, body: JSON.stringify(payload)});
      data = await r.json().catch(() => ({}));
    } catch (e) {
      return {ok: false, error: T.failed};
    }
    return r.ok ? {ok: true, data} : {ok: false, error: data.error || `${r.status}`};
  }

  async function runPreview() {
    clearError();
    const days = Number(form.elements.days.value) || null;
    const payload = {query: query.value, exclusions: exclusions(), days, source_ids: sourceIds()};
    if (form.dataset.topicId) payload.topic_id = Number(form.dataset.topicId);
    out.replaceChildren(el("p", "…", "meta"));
    const res = await call("/api/v1/topics/preview", "POST", payload);
    if (!res.ok) return showError(res.error);
    render(res.data);
  }

  const previewButton = $("preview-btn");
  if (previewButton) previewButton.addEventListener("click", runPreview);
  query.addEventListener("input", clearError);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError();
    const id = form.dataset.topicId;
    const note = form.elements.note.value.trim();
    const payload = {name: form.elements.name.value, query: query.value, exclusions: exclusions()};
    if (note || id) payload.note = note;
    if (id) payload.enabled = form.elements.enabled.checked;
    const res = await call(id ? `/api/v1/topics/${id}` : "/api/v1/topics", id ? "PATCH" : "POST", payload);
    if (!res.ok) return showError(res.error);
    msg.textContent = T.saved;
    window.location.reload();
  });

  // An older version back into the editor: preview it against the saved one, then save.
  for (const button of document.querySelectorAll(".load-version")) {
    button.addEventListener("click", () => {
      query.value = button.dataset.query;
      form.elements.exclusions.value = button.dataset.exclusions;
      msg.replaceChildren(fill(T.loaded, {v: button.dataset.version}));
      form.scrollIntoView();
      runPreview();
    });
  }
  window.addEventListener("resize", () => chart && chart.resize());
})();
