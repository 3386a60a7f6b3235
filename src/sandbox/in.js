// The sandbox's stand-in for platform.linkedin.com/in.js (the retired LinkedIn JavaScript API).
// It reads the framework configuration in its own <script> body, defines the `IN` object the
// JSAPI defined, renders IN/Login tags as a "Sign in with LinkedIn" button and, on sign-in,
// writes the linkedin_oauth_<api_key> cookie exactly as LinkedIn did.
(function () {
  "use strict";

  var script = document.currentScript;
  var base = new URL(".", script.src).href; // .../sandbox/

  // Framework configuration: "key: value" lines in the script's body.
  var config = {};
  (script.textContent || "").split(/\r?\n/).forEach(function (line) {
    var at = line.indexOf(":");
    if (at > 0) config[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  });
  var apiKey = config.api_key || "";
  var flag = function (name) { return /^(true|1|yes)$/i.test(config[name] || ""); };
  var cookieName = "linkedin_oauth_" + apiKey;

  var listeners = {};
  function on(target, name, fn, scope, once) {
    (listeners[name] = listeners[name] || []).push({ fn: fn, scope: scope, once: !!once });
  }
  function fire(name, arg) {
    var list = listeners[name] || [];
    listeners[name] = list.filter(function (l) { return !l.once; });
    list.forEach(function (l) {
      try { l.fn.call(l.scope || window, arg); } catch (e) { console.error(e); }
    });
  }
  function globals(names) {
    return (names || "").split(",").map(function (n) { return n.trim(); })
      .filter(function (n) { return n && typeof window[n] === "function"; })
      .map(function (n) { return window[n]; });
  }

  // CRC-32 (IEEE) as a signed 32-bit integer, as the JSAPI wrote it.
  var crcTable = (function () {
    var table = [];
    for (var n = 0; n < 256; n++) {
      var c = n;
      for (var k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();
  function crc32(text) {
    var crc = 0 ^ -1;
    for (var i = 0; i < text.length; i++) crc = (crc >>> 8) ^ crcTable[(crc ^ text.charCodeAt(i)) & 0xFF];
    return (crc ^ -1) | 0;
  }

  function readCookie(name) {
    var found = document.cookie.split("; ").filter(function (c) { return c.indexOf(name + "=") === 0; })[0];
    return found ? found.slice(name.length + 1) : null;
  }
  function writeCredentials(payload) {
    var value = encodeURIComponent(JSON.stringify(payload));
    document.cookie = cookieName + "=" + value + ";path=/;secure;";
    if (flag("credentials_cookie_crc")) {
      document.cookie = cookieName + "_crc=" + crc32(value) + ";path=/;secure;";
    }
  }
  function expireCredentials() {
    var past = ";path=/;secure;expires=Thu, 01 Jan 1970 00:00:00 GMT";
    document.cookie = cookieName + "=" + past;
    document.cookie = cookieName + "_crc=" + past;
  }

  var IN = window.IN = {
    ENV: {
      js: { apiKey: apiKey, authorize: flag("authorize"), credentialsCookie: flag("credentials_cookie") },
      auth: {},
      url: { base: base },
      sandbox: true
    },
    Event: {
      on: function (target, name, fn, scope) { on(target, name, fn, scope, false); },
      onOnce: function (target, name, fn, scope) { on(target, name, fn, scope, true); }
    },
    User: {
      isAuthorized: function () { return !!IN.ENV.auth.oauth_token; },
      getMemberId: function () { return IN.ENV.auth.member_id || null; },
      authorize: function (callback, scope) {
        if (IN.User.isAuthorized()) {
          if (callback) callback.call(scope || window);
          return;
        }
        var member = new URLSearchParams(window.location.search).get("sandbox_member") || "";
        fetch(base + "oauth2/authorize", {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ api_key: apiKey, member_id: member }).toString()
        }).then(function (response) {
          if (!response.ok) throw new Error("sandbox authorize answered " + response.status);
          return response.json();
        }).then(function (payload) {
          signedIn(payload);
          if (callback) callback.call(scope || window);
        }).catch(function (err) { console.error("IN.User.authorize:", err); });
      },
      logout: function (callback, scope) {
        expireCredentials();
        IN.ENV.auth = {};
        renderButtons();
        fire("logout");
        if (callback) callback.call(scope || window);
      }
    },
    API: {
      Profile: function () {
        var done = [], failed = [];
        var query = {
          fields: function () { return query; },
          result: function (fn) { done.push(fn); return query; },
          error: function (fn) { failed.push(fn); return query; }
        };
        setTimeout(function () {
          fetch(base + "v1/people/~?format=json", { headers: { oauth_token: IN.ENV.auth.oauth_token || "" } })
            .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
            .then(function (r) {
              (r.ok ? done : failed).forEach(function (fn) { fn(r.ok ? { _total: 1, values: [r.body] } : r.body); });
            });
        }, 0);
        return query;
      }
    }
  };

  function signedIn(payload) {
    if (flag("credentials_cookie")) writeCredentials(payload);
    IN.ENV.auth = { oauth_token: payload.access_token, member_id: payload.member_id, anonymous_token: "" };
    renderButtons();
    fire("auth");
  }

  var tags = [];
  function renderButtons() {
    tags.forEach(function (tag) {
      tag.button.hidden = IN.User.isAuthorized();
    });
  }
  function renderTags() {
    Array.prototype.forEach.call(document.querySelectorAll('script[type="IN/Login"]'), function (tag) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "in-login";
      button.textContent = "Sign in with LinkedIn";
      button.addEventListener("click", function () { IN.User.authorize(); });
      tag.parentNode.insertBefore(button, tag);
      globals(tag.getAttribute("data-onAuth")).forEach(function (fn) { on(IN, "auth", fn); });
      globals(tag.getAttribute("data-onLogout")).forEach(function (fn) { on(IN, "logout", fn); });
      tags.push({ tag: tag, button: button });
    });
    renderButtons();
  }

  function start() {
    renderTags();
    fire("frameworkLoaded");
    globals(config.onLoad).forEach(function (fn) { try { fn(); } catch (e) { console.error(e); } });
    fire("systemReady");
    // authorize: true restores a member who signed in earlier in this browser.
    var existing = flag("authorize") && readCookie(cookieName);
    if (existing) {
      try { signedIn(JSON.parse(decodeURIComponent(existing))); } catch (e) { expireCredentials(); }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
