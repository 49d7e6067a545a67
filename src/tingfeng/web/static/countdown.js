// Keeps the deadline countdowns of a page current: every element with data-due (an ISO time)
// gets its .countdown text rewritten each half minute, and the class "overdue" once the time
// has passed. The phrases come from the page, in its language:
// <script type="application/json" id="countdown-text">{"days": "%(d)s 天 %(h)s 小时", …}</script>
(() => {
  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));
  }

  function phrase(text, seconds) {
    const left = Math.abs(Math.trunc(seconds));
    const d = Math.floor(left / 86400);
    const h = Math.floor((left % 86400) / 3600);
    const m = Math.floor((left % 3600) / 60);
    let span;
    if (d) span = fill(text.days, { d, h });
    else if (h) span = fill(text.hours, { h, m });
    else span = fill(text.minutes, { m });
    return fill(seconds < 0 ? text.overdue : text.left, { t: span });
  }

  function update(text) {
    const now = Date.now();
    document.querySelectorAll("[data-due]").forEach((el) => {
      const due = Date.parse(el.dataset.due);
      if (Number.isNaN(due)) return;
      const seconds = (due - now) / 1000;
      const out = el.querySelector(".countdown");
      if (out) out.textContent = phrase(text, seconds);
      el.classList.toggle("overdue", seconds < 0);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("countdown-text");
    if (!data) return;
    const text = JSON.parse(data.textContent);
    update(text);
    window.setInterval(() => update(text), 30000);
  });
})();
