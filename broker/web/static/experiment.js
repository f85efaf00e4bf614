// The experiment page: follow each replica's log (poll the page's logs endpoint, append the new
// lines) while its "follow" box is ticked. The page works without it: the logs are rendered.
"use strict";

function followLogs() {
  for (const pre of document.querySelectorAll("pre[data-logs]")) {
    const box = document.querySelector(`input[data-follow="${pre.id.replace(/^log-/, "")}"]`);
    if (!box) continue;  // an ended experiment's logs do not change
    const tick = async () => {
      if (box.checked) {
        try {
          const answer = await fetch(pre.dataset.logs, { credentials: "same-origin", headers: { Accept: "application/json" } });
          if (answer.ok) {
            const found = await answer.json();
            const lines = Object.values(found)[0] || [];
            const seen = Number(pre.dataset.count || 0);
            if (lines.length > seen) {
              const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
              pre.append(document.createTextNode(lines.slice(seen).join("\n") + "\n"));
              pre.dataset.count = String(lines.length);
              const shown = document.getElementById(pre.id.replace(/^log-/, "count-"));
              if (shown) shown.textContent = String(lines.length);
              if (atEnd) pre.scrollTop = pre.scrollHeight;
            }
          }
        } catch (e) { /* the next tick tries again */ }
      }
      setTimeout(tick, 2000);
    };
    setTimeout(tick, 2000);
  }
}

document.addEventListener("DOMContentLoaded", followLogs);
