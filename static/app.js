// The login page's glue: the JSAPI calls onAuth after sign-in and onLogout after sign-out;
// both talk to this server and show the result. No framework, no build step.
"use strict";

function setStatus(state, text, memberId) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
  if (memberId) {
    const strong = document.createElement("strong");
    strong.id = "member";
    strong.textContent = memberId;
    status.textContent = "Connected as ";
    status.append(strong, ".");
  }
  document.getElementById("sign-out").hidden = state !== "connected";
  if (state !== "connected") {
    document.getElementById("profile").hidden = true;
    const flow = document.getElementById("flow");
    if (flow) flow.hidden = true;
  }
}

async function postJson(path) {
  const response = await fetch(path, { method: "POST", credentials: "same-origin" });
  const body = await response.json().catch(() => ({ message: "The server answered " + response.status + "." }));
  if (!response.ok) throw new Error(body.message || body.error);
  return body;
}

async function showProfile() {
  const response = await fetch("/me", { credentials: "same-origin" });
  if (!response.ok) return;
  const profile = await response.json();
  // A v1 profile (JSAPI flow) or OpenID Connect userinfo.
  document.getElementById("profile-name").textContent =
    profile.name || [profile.firstName, profile.lastName].join(" ");
  document.getElementById("profile-headline").textContent = profile.headline || profile.email || "";
  document.getElementById("profile").hidden = false;
}

// Called by the JSAPI once the member has signed in (and the credentials cookie is set).
async function onAuth() {
  setStatus("working", "Connecting…");
  try {
    const result = await postJson("/token-exchange");
    setStatus("connected", "", result.member_id);
    await showProfile();
  } catch (err) {
    setStatus("error", "Could not connect: " + err.message);
  }
}

// Called by the JSAPI after sign-out.
async function onLogout() {
  try {
    await postJson("/logout");
    setStatus("disconnected", "Not connected.");
  } catch (err) {
    setStatus("error", "Could not sign out: " + err.message);
  }
}

// The JSAPI's onLoad hook.
function onLinkedInLoad() {}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => {
    // The JSAPI calls data-onLogout (onLogout) itself when it signs the member out.
    if (window.IN && IN.User && IN.User.isAuthorized && IN.User.isAuthorized()) {
      IN.User.logout();
    } else {
      onLogout();
    }
  });
  if (document.getElementById("status").dataset.state === "connected") showProfile();
});
