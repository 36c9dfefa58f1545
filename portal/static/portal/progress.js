// Live progress of running jobs (backups, recoveries...): polls each unfinished bar's JSON endpoint once a second,
// redraws the bar and tells the page (a "job-progress" event carrying the JSON) so it can redraw more, such as a
// recovery's step list. A finished job reloads the page, whose other fields are then final.
"use strict";
(function () {
  function update(box, data) {
    const bar = box.querySelector(".bar");
    const track = box.querySelector(".progress");
    track.classList.toggle("indeterminate", data.percent === null && !data.finished);
    bar.style.width = (data.finished ? 100 : (data.percent || 0)) + "%";
    box.querySelector(".progress-label").textContent = data.label;
    box.dataset.finished = data.finished ? "true" : "false";
    box.dataset.status = data.status;
    box.dataset.percent = data.percent === null ? "" : String(data.percent);
    box.dispatchEvent(new CustomEvent("job-progress", {bubbles: true, detail: data}));
  }

  function poll(box) {
    fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        update(box, data);
        if (data.finished) {
          window.setTimeout(function () { window.location.reload(); }, 500);
        } else {
          window.setTimeout(function () { poll(box); }, 1000);
        }
      })
      .catch(function () { window.setTimeout(function () { poll(box); }, 3000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".job-progress[data-finished=false]").forEach(poll);
  });
})();
