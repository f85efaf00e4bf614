// The submit page: "Explain placement" fetches the explain for the form as it is (the same POST
// the button makes without a script) and shows it in place; the roles table shows only the
// selected framework's roles.
"use strict";

function explainInPlace(form) {
  form.addEventListener("submit", async (event) => {
    const button = event.submitter;
    if (!button || button.value !== "explain") return;
    event.preventDefault();
    const body = new URLSearchParams(new FormData(form));
    body.set("action", "explain");
    const target = document.getElementById("explain");
    target.setAttribute("aria-busy", "true");
    try {
      const answer = await fetch(form.getAttribute("action"), {  // form.action is the "action" button
        method: "POST", body, credentials: "same-origin",
        headers: { "X-CSRF-Token": window.workbench.csrf() },
      });
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = doc.getElementById("explain");
      const error = doc.getElementById("form-error");
      const old = document.getElementById("form-error");
      if (old) old.remove();
      if (error) form.before(error);
      for (const el of form.querySelectorAll(".field-error")) el.remove();
      for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
      for (const el of form.querySelectorAll("label.invalid")) el.classList.remove("invalid");
      for (const el of doc.querySelectorAll(".field-error")) {
        const input = el.parentElement && el.parentElement.querySelector("input, select, textarea");
        const mine = input && form.querySelector(`[name="${CSS.escape(input.name)}"]`);
        if (mine) {
          mine.setAttribute("aria-invalid", "true");
          mine.parentElement.classList.add("invalid");
          mine.parentElement.append(el);
        }
      }
      target.innerHTML = fresh ? fresh.innerHTML : "";
    } finally {
      target.removeAttribute("aria-busy");
    }
  });
}

function rolesOfFramework(form) {
  const roles = document.getElementById("roles");
  const select = form.querySelector('select[name="framework"]');
  if (!roles || !select) return;
  const byFramework = JSON.parse(roles.dataset.frameworkRoles || "{}");
  const show = () => {
    const wanted = byFramework[select.value] || [];
    for (const row of roles.querySelectorAll("tr[data-role]")) {
      row.hidden = !wanted.includes(row.dataset.role);
    }
  };
  select.addEventListener("change", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("submit-form");
  if (!form) return;
  explainInPlace(form);
  rolesOfFramework(form);
});
