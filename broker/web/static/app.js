// The workbench's progressive scripts: pages work without them; they add local times, live
// updates and the CSRF header of scripted requests. No library, nothing from another site.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

// <time datetime="..."> in the viewer's time zone.
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) {
      el.textContent = when.toLocaleString();
      el.title = el.getAttribute("datetime");
    }
  }
}

// A selector that finds the same control in the re-rendered markup (its id, else its form's
// action with its name and value), or null.
function focusKey(node) {
  if (node.id) return "#" + CSS.escape(node.id);
  const form = node.form ? node.form.getAttribute("action") : null;
  if (!form || !node.name) return null;
  return `form[action="${CSS.escape(form)}"] [name="${CSS.escape(node.name)}"][value="${CSS.escape(node.value || "")}"]`;
}

// An element with data-live="URL" is replaced, every data-every seconds (default 2), by the
// element of the same id in the page at URL (the server renders it; no client-side templates),
// only when it changed.
function live(root) {
  for (const el of root.querySelectorAll("[data-live]")) {
    const every = Number(el.dataset.every || 2) * 1000;
    let last = el.innerHTML;
    const tick = async () => {
      try {
        const answer = await fetch(el.dataset.live, { headers: { Accept: "text/html" }, credentials: "same-origin" });
        if (answer.ok) {
          const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
          const fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== last) {
            last = fresh.innerHTML;
            // Keep a keyboard user's place: the focused control is found again after the swap.
            const focused = el.contains(document.activeElement) ? focusKey(document.activeElement) : null;
            el.innerHTML = fresh.innerHTML;
            localTimes(el);
            if (focused) {
              const again = el.querySelector(focused);
              if (again) again.focus();
            }
          }
        }
      } catch (e) { /* the next tick tries again */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  }
}

window.workbench = { csrf, localTimes, live };

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  live(document);
});
