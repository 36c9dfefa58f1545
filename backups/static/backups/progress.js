// Live progress of running backups: polls each unfinished bar's JSON endpoint once a second.
"use strict";
(function () {
  function update(box, data) {
    const bar = box.querySelector(".bar");
    const track = box.querySelector(".progress");
    track.classList.toggle("indeterminate", data.percent === null && !data.finished);
    bar.style.width = (data.finished ? 100 : (data.percent || 0)) + "%";
    box.querySelector(".progress-label").textContent = data.label;
    box.dataset.finished = data.finished ? "true" : "false";
    box.dataset.percent = data.percent === null ? "" : String(data.percent);
  }

  function poll(box) {
    fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        update(box, data);
        if (data.finished) {
          // The page's other fields (size, checksum, row counts, verification) are now final.
          window.setTimeout(function () { window.location.reload(); }, 500);
        } else {
          window.setTimeout(function () { poll(box); }, 1000);
        }
      })
      .catch(function () { window.setTimeout(function () { poll(box); }, 3000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".backup-progress[data-finished=false]").forEach(poll);
  });
})();
