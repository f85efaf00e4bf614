// The policy editor's check as you type: the draft goes to /ui/policies/validate (the same
// validation the store runs on save); each problem is listed with its line, the gutter marks the
// line, and Save stays disabled until the draft is valid. Without this script, the server checks
// the draft on save and shows the same list.
"use strict";

(() => {
  const form = document.getElementById("policy-editor");
  if (!form) return;
  const area = document.getElementById("policy-lines");
  const gutter = document.getElementById("policy-gutter");
  const status = document.getElementById("policy-check-status");
  const list = document.getElementById("policy-problems");
  const saveButton = document.getElementById("policy-save");
  let bad = new Set();
  let timer = null;
  let asked = 0;

  function drawGutter() {
    const count = area.value.split("\n").length;
    const rows = [];
    for (let n = 1; n <= count; n++) {
      const row = document.createElement("span");
      row.textContent = bad.has(n) ? `✗ ${n}` : String(n);
      if (bad.has(n)) row.className = "bad";
      rows.push(row, "\n");
    }
    gutter.replaceChildren(...rows);
    gutter.scrollTop = area.scrollTop;
  }

  function show(answer) {
    bad = new Set(answer.problems.map((p) => p.line));
    list.replaceChildren();
    for (const p of answer.problems) {
      const item = document.createElement("li");
      item.dataset.line = p.line;
      const where = document.createElement("strong");
      where.textContent = `Line ${p.line}`;
      const text = document.createElement("code");
      text.textContent = p.text;
      item.append(where, " ", text, `: ${p.reason}`);
      list.append(item);
    }
    const n = answer.problems.length;
    status.textContent = n
      ? `${n} line${n === 1 ? "" : "s"} to fix before saving.`
      : `${answer.lines} line${answer.lines === 1 ? "" : "s"}, all valid.`;
    status.className = n ? "error" : "ok";
    area.setAttribute("aria-invalid", n ? "true" : "false");
    saveButton.disabled = n > 0;
    drawGutter();
  }

  async function check() {
    const mine = ++asked;
    saveButton.disabled = true; // until this draft is known to be valid
    try {
      const answer = await fetch(form.dataset.validate, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": window.workbench.csrf() },
        body: new URLSearchParams({ lines: area.value }),
      });
      if (mine !== asked) return; // a later keystroke's answer decides
      if (!answer.ok) {
        status.textContent = `Cannot check the draft (${answer.status}); it is checked again on save.`;
        saveButton.disabled = false;
        return;
      }
      show(await answer.json());
    } catch (e) {
      if (mine === asked) {
        status.textContent = "Cannot reach the broker to check the draft; it is checked again on save.";
        saveButton.disabled = false;
      }
    }
  }

  area.addEventListener("input", () => {
    drawGutter();
    clearTimeout(timer);
    saveButton.disabled = true;
    timer = setTimeout(check, 250);
  });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  form.addEventListener("submit", (event) => {
    if (saveButton.disabled) event.preventDefault();
  });
  drawGutter();
  check();
})();
