// The shop's pages: start checkouts and follow one until it is paid.
// No framework and no external assets; the page works without a build.
"use strict";

const POLL_MS = 1500;

// Where the service is mounted ("" at the root, "/pay" under a prefix);
// the server writes it into <body data-base>, so every URL below works
// wherever the pages are served.
function base() {
  return document.body.dataset.base || "";
}

// 7265 -> "2:01:05", 65 -> "1:05"
function clockText(totalSeconds) {
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = String(totalSeconds % 60).padStart(2, "0");
  if (hours > 0) {
    return hours + ":" + String(minutes).padStart(2, "0") + ":" + seconds;
  }
  return minutes + ":" + seconds;
}

function showMessage(text) {
  const message = document.getElementById("message");
  if (!message) return;
  message.textContent = text;
  message.hidden = !text;
}

async function startCheckout(productId, mode) {
  const response = await fetch(base() + "/api/checkouts", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ product_id: productId, mode: mode }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.description || body.title || "Please try again.");
  }
  window.location.assign(base() + "/checkout/" + encodeURIComponent(body.id));
}

function wireStartButtons() {
  for (const button of document.querySelectorAll("button.pay")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      showMessage("");
      try {
        await startCheckout(button.dataset.productId, Number(button.dataset.mode));
      } catch (error) {
        showMessage(error.message);
        button.disabled = false;
      }
    });
  }
}

function followCheckout(root) {
  const id = root.dataset.checkoutId;
  const statusEl = document.getElementById("status");
  const statusZh = document.getElementById("status-zh");
  const countdown = document.getElementById("countdown");
  const newCode = document.getElementById("new-code");
  // The words for each status come from the server (entrypoints/pages.py).
  const labels = JSON.parse(root.dataset.statusLabels || "{}");
  let expiresAt = root.dataset.expiresAt ? Date.parse(root.dataset.expiresAt) : NaN;
  let pollTimer = null;
  let tickTimer = null;

  function setStatusText(pair) {
    statusEl.textContent = pair[0];
    statusZh.textContent = pair[1];
  }

  function finished() {
    return root.dataset.status !== "NOTPAY";
  }

  function apply(checkout) {
    root.dataset.status = checkout.status;
    document.body.dataset.status = checkout.status;
    expiresAt = checkout.expires_at ? Date.parse(checkout.expires_at) : NaN;
    if (root.dataset.expired !== "true" || finished()) {
      setStatusText(labels[checkout.status] || [checkout.status, ""]);
    }
    if (finished()) {
      countdown.hidden = true;
      newCode.hidden = checkout.status === "SUCCESS";
    }
  }

  function tick() {
    if (finished() || root.dataset.mode !== "2" || Number.isNaN(expiresAt)) {
      countdown.hidden = true;
      return;
    }
    const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    countdown.hidden = false;
    countdown.textContent = "Code valid for " + clockText(left);
    if (left === 0) {
      root.dataset.expired = "true";
      countdown.textContent = "This code has expired.";
      setStatusText(labels.EXPIRED || ["Code expired", ""]);
      newCode.hidden = false;
    }
  }

  async function poll() {
    try {
      const response = await fetch(base() + "/api/checkouts/" + encodeURIComponent(id), {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (response.ok) {
        apply(await response.json());
        showMessage("");
      }
    } catch (error) {
      // A dropped connection is retried on the next poll.
    }
    if (finished()) {
      clearInterval(tickTimer);
      return;
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  newCode.addEventListener("click", async () => {
    newCode.disabled = true;
    try {
      await startCheckout(root.dataset.productId, 2);
    } catch (error) {
      showMessage(error.message);
      newCode.disabled = false;
    }
  });

  document.body.dataset.status = root.dataset.status;
  tick();
  tickTimer = setInterval(tick, 1000);
  if (!finished()) pollTimer = setTimeout(poll, POLL_MS);
  return () => { clearTimeout(pollTimer); clearInterval(tickTimer); };
}

document.addEventListener("DOMContentLoaded", () => {
  wireStartButtons();
  const root = document.getElementById("checkout");
  if (root) followCheckout(root);
});
