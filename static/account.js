// The account page's glue (templates/account.html): ends one of the member's other sessions,
// or all of them, through the JSON routes, then draws the list again from GET /sessions. No
// framework, no build step; nothing from the server is put into the page as markup.
"use strict";

// How the page names a flow and a time, as the server renders them (src/handlers/account.rs).
const FLOWS = { oidc: "OpenID Connect", jsapi: "JavaScript API" };

function shownTime(seconds) {
  const t = new Date(seconds * 1000);
  const two = n => String(n).padStart(2, "0");
  return t.getUTCFullYear() + "-" + two(t.getUTCMonth() + 1) + "-" + two(t.getUTCDate()) + " " +
    two(t.getUTCHours()) + ":" + two(t.getUTCMinutes()) + " UTC";
}

// Says `text` under the list; `state` is "done", "working" or "error".
function say(state, text) {
  const message = document.getElementById("account-message");
  message.dataset.state = state;
  message.textContent = text;
}

// The page when the session has ended meanwhile (signed out elsewhere).
function showSignedOut() {
  const status = document.getElementById("account-status");
  status.dataset.state = "disconnected";
  status.textContent = "Not connected: sign in to see your sessions.";
  const table = document.getElementById("sessions");
  if (table) table.hidden = true;
  document.getElementById("end-others").hidden = true;
}

function cell(className, text) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

// Draws the rows of `sessions` (GET /sessions's list).
function draw(sessions) {
  const rows = document.getElementById("session-rows");
  rows.replaceChildren(...sessions.map(session => {
    const row = document.createElement("tr");
    row.className = session.current ? "session current" : "session";
    row.dataset.handle = session.handle;
    row.dataset.current = String(session.current);
    const browser = cell("browser", session.browser);
    if (session.current) {
      const mark = document.createElement("strong");
      mark.className = "this-device";
      mark.textContent = "(this device)";
      browser.append(" ", mark);
    }
    const created = cell("created", shownTime(session.created_at));
    created.dataset.at = String(session.created_at);
    const seen = cell("seen", shownTime(session.last_seen));
    seen.dataset.at = String(session.last_seen);
    const action = cell("action", "");
    if (!session.current) {
      const end = document.createElement("button");
      end.type = "button";
      end.className = "end-session secondary";
      end.dataset.handle = session.handle;
      end.textContent = "End session";
      action.append(end);
    }
    row.append(browser, cell("flow", FLOWS[session.flow] || "Unknown"), created, seen, action);
    return row;
  }));
  document.getElementById("end-others").hidden = !sessions.some(s => !s.current);
}

// The server's JSON answer to `path`, or an error carrying its status and message.
async function call(method, path) {
  const response = await fetch(path, { method, credentials: "same-origin" });
  const body = await response.json().catch(() => ({ message: "The server answered " + response.status + "." }));
  if (!response.ok) {
    const err = new Error(body.message || body.error);
    err.status = response.status;
    err.code = body.error;
    throw err;
  }
  return body;
}

// Draws the list again; false when the member is no longer connected.
async function refresh() {
  try {
    draw((await call("GET", "/sessions")).sessions);
    return true;
  } catch (err) {
    if (err.status === 401) {
      showSignedOut();
      return false;
    }
    throw err;
  }
}

async function endSession(handle) {
  say("working", "Ending the session…");
  try {
    await call("DELETE", "/sessions/" + encodeURIComponent(handle));
    say("done", "Session ended.");
  } catch (err) {
    if (err.code === "session_not_found") {
      say("done", "That session had already ended.");
    } else if (err.status === 401) {
      showSignedOut();
      say("error", "This session has ended: sign in again.");
      return;
    } else {
      say("error", "Could not end the session: " + err.message);
      return;
    }
  }
  await refresh().catch(err => say("error", "Could not list your sessions: " + err.message));
}

async function endOthers() {
  say("working", "Ending your other sessions…");
  try {
    const n = (await call("POST", "/sessions/end-others")).sessions_ended;
    say("done", "Ended " + n + (n === 1 ? " other session." : " other sessions."));
  } catch (err) {
    if (err.status === 401) {
      showSignedOut();
      say("error", "This session has ended: sign in again.");
    } else {
      say("error", "Could not end your other sessions: " + err.message);
    }
    return;
  }
  await refresh().catch(err => say("error", "Could not list your sessions: " + err.message));
}

document.addEventListener("DOMContentLoaded", () => {
  const rows = document.getElementById("session-rows");
  if (!rows) return;
  rows.addEventListener("click", event => {
    const button = event.target.closest("button.end-session");
    if (button) endSession(button.dataset.handle);
  });
  document.getElementById("end-others").addEventListener("click", endOthers);
});
