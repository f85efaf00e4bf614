// The experiments list: the table's rows re-rendered from the page's own URL every 2 s (live
// statuses and durations, no client-side templates), held while the keyboard or the pointer is
// on a row's buttons so nothing moves under the user; and a question before a delete.
"use strict";

(() => {
  const EVERY = 2000;

  function refresh(body) {
    let busy = false;
    const tick = async () => {
      const active = document.activeElement;
      const holding = body.contains(active) && active !== body || body.querySelector("button:hover");
      if (!busy && !holding) {
        busy = true;
        try {
          const answer = await fetch(body.dataset.refresh, { headers: { Accept: "text/html" }, credentials: "same-origin" });
          if (answer.ok) {
            const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
            const fresh = doc.getElementById(body.id);
            if (fresh && fresh.innerHTML !== body.innerHTML) {
              body.innerHTML = fresh.innerHTML;
              window.workbench.localTimes(body);
            }
          }
        } catch (e) { /* the next tick tries again */ }
        busy = false;
      }
      setTimeout(tick, EVERY);
    };
    setTimeout(tick, EVERY);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const body of document.querySelectorAll("tbody[data-refresh]")) {
      refresh(body);
      body.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-confirm]");
        if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    }
  });
})();
