// Recovery pages. The request form: show the fields of the chosen kind, offer the chosen database's backups,
// show the target time in UTC as it is typed. A request's page: redraw the step list from the progress JSON that
// portal/progress.js polls (the "job-progress" event).
"use strict";
(function () {
  // --- the request's page ---
  function stepRow(step) {
    const row = document.createElement("tr");
    row.className = "step step-" + step.status;
    row.dataset.position = String(step.position);
    const cells = [String(step.position), step.name, null, step.duration, null];
    cells.forEach(function (text, i) {
      const cell = document.createElement("td");
      if (i === 1) { cell.className = "step-name"; }
      if (i === 3) { cell.className = "step-duration"; }
      if (text !== null) { cell.textContent = text; }
      row.appendChild(cell);
    });
    const badge = document.createElement("span");
    badge.className = "status step-status " + step.status;
    badge.textContent = step.status_display;
    row.children[2].appendChild(badge);
    const log = row.children[4];
    log.className = "step-log";
    if (step.error) {
      const error = document.createElement("div");
      error.className = "step-error";
      error.textContent = step.error;
      log.appendChild(error);
    }
    if (step.log) {
      const pre = document.createElement("pre");
      pre.textContent = step.log;
      log.appendChild(pre);
    }
    return row;
  }

  document.addEventListener("job-progress", function (event) {
    const body = document.querySelector("#recovery-live table.recovery-steps tbody");
    if (!body || !event.detail.steps || !event.detail.steps.length) { return; }
    body.replaceChildren.apply(body, event.detail.steps.map(stepRow));
  });

  // --- the request form ---
  function toUtc(text) {
    const m = text.trim().match(/^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*(\S*)$/);
    if (!m) { return ""; }
    const naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0), m[7] ? Math.round(parseFloat(m[7]) * 1000) : 0);
    const zone = m[8];
    let utc;
    if (!zone) { return "give the time zone"; }
    if (/^(Z|UTC)$/i.test(zone)) {
      utc = naive;
    } else if (/^[+-]\d{2}(:?\d{2})?$/.test(zone)) {
      const o = zone.match(/^([+-])(\d{2}):?(\d{2})?$/);
      utc = naive - (o[1] === "+" ? 1 : -1) * ((+o[2]) * 60 + (+(o[3] || 0))) * 60000;
    } else {
      let format;
      try {
        format = new Intl.DateTimeFormat("en-US", {timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
          day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
      } catch (e) { return "unknown time zone"; }
      const offsetAt = function (t) {
        const parts = {};
        format.formatToParts(new Date(t)).forEach(function (p) { parts[p.type] = +p.value; });
        return Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second) - Math.floor(t / 1000) * 1000;
      };
      utc = naive - offsetAt(naive);
      utc = naive - offsetAt(utc);
    }
    return "= " + new Date(utc).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function setUpForm(form) {
    const kind = form.querySelector("#id_kind");
    const database = form.querySelector("#id_database");
    const backup = form.querySelector("#id_backup");
    const time = form.querySelector("#id_target_time");
    const utc = document.createElement("span");
    utc.className = "target-time-utc";
    time.insertAdjacentElement("afterend", utc);

    function showKind() {
      form.querySelectorAll("fieldset.kind-pitr, fieldset.kind-table, fieldset.kind-complete").forEach(function (set) {
        set.hidden = !set.classList.contains("kind-" + kind.value);
      });
      const row = form.querySelector(".form-row.field-cluster");
      if (row) { row.hidden = !(kind.value === "pitr" || kind.value === "drill"); }
    }

    function offerBackups() {
      const wanted = kind.value === "pitr" ? "base" : "logical";
      let keep = !backup.value;  // "the newest" stays as it is
      Array.from(backup.options).forEach(function (option) {
        if (!option.value) { return; }
        const fits = option.dataset.kind === wanted &&
          (!database.value || wanted === "base" || option.dataset.database === database.value);
        option.hidden = !fits;
        if (fits && option.selected) { keep = true; }
      });
      if (!keep) {
        const first = Array.from(backup.options).find(function (o) { return o.value && !o.hidden; });
        backup.value = first ? first.value : "";
      }
    }

    kind.addEventListener("change", function () { showKind(); offerBackups(); });
    database.addEventListener("change", offerBackups);
    time.addEventListener("input", function () { utc.textContent = toUtc(time.value); });
    showKind();
    offerBackups();
    utc.textContent = time.value ? toUtc(time.value) : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("#recoveryrequest_form");
    if (form) { setUpForm(form); }
  });
})();
