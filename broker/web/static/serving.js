// The serve page's "try it" box: sends the form without leaving the page and shows the answer
// the server rendered (the same #try-answer the page shows after a plain form post).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("try");
  const answer = document.getElementById("try-answer");
  if (!form || !answer) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    answer.textContent = "Sending…";
    try {
      const sent = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-CSRF-Token": window.workbench.csrf() },
        credentials: "same-origin",
      });
      const doc = new DOMParser().parseFromString(await sent.text(), "text/html");
      const fresh = doc.getElementById("try-answer");
      if (fresh) {
        answer.innerHTML = fresh.innerHTML;
      } else {
        const error = doc.querySelector(".error");
        answer.textContent = `HTTP ${sent.status}: ${error ? error.textContent : sent.statusText}`;
      }
    } catch (e) {
      answer.textContent = `The broker did not answer: ${e}`;
    } finally {
      button.disabled = false;
    }
  });
});
