// The banditkit dashboard: fetches the page's panel (with the visitor's token when the service has tokens) and
// sends the admin actions to the HTTP API. Tokens stay in this tab's sessionStorage, sent as a bearer header.
"use strict";
(() => {
  const READ = "banditkit.token";
  const ADMIN = "banditkit.admin-token";
  const body = document.body;
  const auth = body.dataset.auth === "on";
  const base = body.dataset.base || "";
  const panel = document.getElementById("panel");
  const status = document.getElementById("status");
  const login = document.getElementById("login");
  const dialog = document.getElementById("admin");

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  function request(method, url, token, json) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    return fetch(url, init);
  }

  async function problem(response) {
    try {
      const detail = (await response.json()).detail;
      return typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch (error) {
      return response.statusText;
    }
  }

  async function load() {
    const token = sessionStorage.getItem(READ) || sessionStorage.getItem(ADMIN);
    if (auth && !token) {
      login.hidden = false;
      return;
    }
    const response = await request("GET", panel.dataset.panel, token);
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(READ);
      login.hidden = false;
      say(await problem(response), true);
      return;
    }
    if (!response.ok) {
      say(await problem(response), true);
      return;
    }
    login.hidden = true;
    panel.innerHTML = await response.text(); // HTML rendered and escaped by the server
    panel.dataset.loaded = String(Date.now());
  }

  function adminToken(what) {
    const kept = sessionStorage.getItem(ADMIN);
    if (!auth || kept) return Promise.resolve(auth ? kept : null);
    return new Promise((resolve) => {
      const form = dialog.querySelector("form");
      const input = form.elements.token;
      document.getElementById("admin-what").textContent = what;
      input.value = "";
      dialog.addEventListener(
        "close",
        () => resolve(dialog.returnValue === "ok" && input.value ? input.value : undefined),
        { once: true },
      );
      dialog.showModal();
    });
  }

  async function act(button) {
    const name = panel.dataset.experiment;
    const path = base + "/v1/experiments/" + encodeURIComponent(name);
    const arm = button.dataset.arm;
    const actions = {
      disable: ["PATCH", "/arms", { disable: [arm] }, `Disable arm ${arm}`, `arm ${arm} disabled`],
      enable: ["PATCH", "/arms", { enable: [arm] }, `Enable arm ${arm}`, `arm ${arm} enabled`],
      snapshot: ["POST", "/snapshots", undefined, "Take a snapshot", "snapshot taken"],
      rollback: [
        "POST",
        "/rollback",
        { snapshot_id: Number(button.dataset.snapshot) },
        `Roll back to snapshot ${button.dataset.snapshot}`,
        `rolled back to snapshot ${button.dataset.snapshot}`,
      ],
    };
    const [method, suffix, json, what, done] = actions[button.dataset.action];
    const token = await adminToken(what);
    if (token === undefined) return say("cancelled");
    const response = await request(method, path + suffix, token, json);
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(ADMIN);
      return say(`${what}: ${await problem(response)}`, true);
    }
    if (!response.ok) return say(`${what}: ${await problem(response)}`, true);
    if (token) sessionStorage.setItem(ADMIN, token);
    say(done);
    await load();
  }

  login.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(READ, login.elements.token.value);
    login.reset();
    say("");
    load();
  });
  panel.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button);
  });
  document.getElementById("refresh").addEventListener("click", () => load());
  const forget = document.getElementById("forget");
  if (forget) {
    forget.addEventListener("click", () => {
      sessionStorage.removeItem(READ);
      sessionStorage.removeItem(ADMIN);
      panel.textContent = "";
      say("tokens forgotten");
      load();
    });
  }
  if (auth) load();
})();
