// The login page's glue: the JSAPI calls onAuth after sign-in and onLogout after sign-out;
// both talk to this server and show the result. No framework, no build step.
"use strict";

// Shows the page's state ("connected", "working", "error" or "disconnected"). Connected, the
// page offers "Sign out" and the flow; otherwise the two sign-in buttons (not while working).
function setStatus(state, text, memberId, flow) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  if (state === "connected") delete status.dataset.ended;
  status.textContent = text;
  if (memberId) {
    const strong = document.createElement("strong");
    strong.id = "member";
    strong.textContent = memberId;
    status.textContent = "Connected as ";
    status.append(strong, ".");
  }
  const connected = state === "connected";
  document.getElementById("sign-out").hidden = !connected;
  document.getElementById("sign-out-everywhere").hidden = !connected;
  document.getElementById("account-link").hidden = !connected;
  document.getElementById("sign-in").hidden = connected || state === "working";
  const flowLine = document.getElementById("flow");
  if (flow) flowLine.textContent = "Signed in through " + flow + ".";
  flowLine.hidden = !connected;
  if (!connected) document.getElementById("profile").hidden = true;
}

// Whether the page already shows a member connected, through either flow.
function showsConnected() {
  return document.getElementById("status").dataset.state === "connected";
}

async function postJson(path, payload) {
  const init = { method: "POST", credentials: "same-origin" };
  if (payload) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(payload);
  }
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({ message: "The server answered " + response.status + "." }));
  if (!response.ok) throw new Error(body.message || body.error);
  return body;
}

async function showProfile() {
  const response = await fetch("/me", { credentials: "same-origin" });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    if (body.error === "linkedin_access_withdrawn") showWithdrawn();
    return;
  }
  if (!response.ok) return;
  const profile = await response.json();
  // A v1 profile (JSAPI flow) or OpenID Connect userinfo.
  document.getElementById("profile-name").textContent =
    profile.name || [profile.firstName, profile.lastName].join(" ");
  document.getElementById("profile-headline").textContent = profile.headline || profile.email || "";
  document.getElementById("profile").hidden = false;
}

// Called by the JSAPI once the member has signed in (and the credentials cookie is set), and
// again on every load of the page while its cookie lasts. A page that already shows a member
// connected makes no exchange: not a second one for the same member, and no silent switch of
// a session (an OpenID Connect one, say) to whoever a leftover JSAPI cookie names. The
// sign-in buttons are hidden while connected; "Sign out" comes first.
async function onAuth() {
  if (showsConnected()) return;
  setStatus("working", "Connecting…");
  try {
    const result = await postJson("/token-exchange");
    setStatus("connected", "", result.member_id, "the JavaScript API");
    await showProfile();
  } catch (err) {
    setStatus("error", "Could not connect: " + err.message);
  }
}

// Called by the JSAPI after sign-out (also after "Sign out everywhere", which has already
// ended the session).
async function onLogout() {
  if (document.getElementById("status").dataset.state === "disconnected") return;
  try {
    await postJson("/logout");
    setStatus("disconnected", "Not connected.");
  } catch (err) {
    setStatus("error", "Could not sign out: " + err.message);
  }
}

// Ends every session of the member (other browsers and devices too), then signs the JSAPI
// out so that its cookie does not sign this browser in again.
async function signOutEverywhere() {
  try {
    const result = await postJson("/logout", { everywhere: true });
    const n = result.sessions_ended;
    setStatus("disconnected", "Signed out everywhere (" + n + (n === 1 ? " session)." : " sessions)."));
    if (window.IN && IN.User && IN.User.isAuthorized && IN.User.isAuthorized()) IN.User.logout();
  } catch (err) {
    setStatus("error", "Could not sign out everywhere: " + err.message);
  }
}

// The session ended because LinkedIn no longer accepts the member's credentials (the app was
// removed, or the token revoked): say so, and offer the sign-in again.
function showWithdrawn() {
  setStatus("disconnected", "LinkedIn access was withdrawn. Sign in again to reconnect.");
  document.getElementById("status").dataset.ended = "linkedin_access_withdrawn";
  document.getElementById("renew").hidden = true;
}

// In the last days of the member's LinkedIn token (and with no refresh token to extend it),
// offers a new sign-in, which LinkedIn answers without a consent screen for a member who
// consented before: the OpenID Connect link, or the JSAPI's own sign-in again.
function showRenew(session) {
  // A withdrawal already shown (by /me, answered first) wins over an older /session answer.
  if (document.getElementById("status").dataset.ended) return;
  const link = document.getElementById("renew-link");
  const jsapi = document.getElementById("renew-jsapi");
  const offered = session.flow === "oidc" ? link : (jsapi || link);
  if (!offered) return;
  offered.hidden = false;
  const when = new Date(session.token_expires_at * 1000);
  document.getElementById("renew-when").textContent = "on " + when.toLocaleDateString();
  document.getElementById("renew").hidden = false;
}

// A JSAPI member renews by signing out here and in the JSAPI, then signing in again.
async function renewJsapi() {
  try {
    await postJson("/logout");
    setStatus("disconnected", "Sign in again to renew your LinkedIn access.");
    document.getElementById("renew").hidden = true;
    if (window.IN && IN.User && IN.User.authorize) IN.User.authorize(onAuth);
  } catch (err) {
    setStatus("error", "Could not renew: " + err.message);
  }
}

// What /session says beyond "connected": why the session ended, or that its token ends soon.
async function checkSession() {
  const response = await fetch("/session", { credentials: "same-origin" });
  if (!response.ok) return;
  const session = await response.json();
  if (!session.connected && session.ended === "linkedin_access_withdrawn") {
    showWithdrawn();
  } else if (session.connected && session.renew_suggested) {
    showRenew(session);
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
  document.getElementById("sign-out-everywhere").addEventListener("click", signOutEverywhere);
  const renew = document.getElementById("renew-jsapi");
  if (renew) renew.addEventListener("click", renewJsapi);
  checkSession();
  if (document.getElementById("status").dataset.state === "connected") showProfile();
});
