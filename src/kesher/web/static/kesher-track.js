/* Kesher tracking (/t/kesher.js): sends behaviour to the Kesher server it came from, nowhere else. ES5. */
(function (w, d) {
  "use strict";
  var me = d.currentScript || d.querySelector("script[data-key][src*='/t/kesher.js']");
  if (!me || (w.kesher && w.kesher.loaded)) { return; }
  var key = me.getAttribute("data-key");
  if (!key) { return; }
  var base = me.src.replace(/\/t\/kesher\.js.*$/, "");
  var NAME = "kesher_aid", MAX_BATCH = 50;
  var outbox = [], busy = false;

  function randomId() {
    var out = "", bytes = w.crypto && w.crypto.getRandomValues && w.crypto.getRandomValues(new Uint8Array(16)), i;
    for (i = 0; i < 16; i++) { out += ((bytes ? bytes[i] : Math.random() * 256 | 0) + 256).toString(16).slice(1); }
    return out;
  }

  // The visitor id lives in localStorage, or in a first-party cookie where storage is blocked.
  function loadId() {
    var stored = null, match;
    try { stored = w.localStorage.getItem(NAME); } catch (e) { stored = null; }
    match = d.cookie.match(/(?:^|; )kesher_aid=([A-Za-z0-9]+)/);
    return stored || (match && match[1]);
  }
  function saveId(id) {
    try { w.localStorage.setItem(NAME, id); return; } catch (e) { /* blocked: a cookie then */ }
    d.cookie = NAME + "=" + id + "; path=/; max-age=34560000; SameSite=Lax" +
      (w.location.protocol === "https:" ? "; Secure" : "");
  }
  var visitor = loadId();
  if (!visitor) { visitor = randomId(); saveId(visitor); }

  function beacon(item) {
    if (w.navigator.sendBeacon) { w.navigator.sendBeacon(base + item.path, JSON.stringify(item.body)); }
  }

  // One request at a time, so an identify arrives after the events before it and gives them to the
  // contact: fetch(keepalive) while the page is shown, sendBeacon for what is left when it is hidden.
  function pump() {
    if (busy || !outbox.length) { return; }
    var item = outbox.shift(), finished = false;
    if (!w.fetch) { beacon(item); pump(); return; }
    busy = true;
    function next() { if (!finished) { finished = true; busy = false; pump(); } }
    w.setTimeout(next, 10000);
    // text/plain keeps the request "simple": no CORS preflight before each call.
    w.fetch(base + item.path, {method: "POST", body: JSON.stringify(item.body), keepalive: true,
      credentials: "omit", headers: {"Content-Type": "text/plain;charset=UTF-8"}}).then(next, next);
  }
  function flush() {
    while (outbox.length) { beacon(outbox.shift()); }
  }
  w.addEventListener("pagehide", flush);
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") { flush(); } });

  function send(path, body) {
    var last = outbox[outbox.length - 1];
    if (path === "/t/collect" && last && last.path === path && last.body.anonymous_id === body.anonymous_id &&
        last.body.events.length < MAX_BATCH) {
      last.body.events.push(body.events[0]);
    } else {
      outbox.push({path: path, body: body});
    }
    pump();
  }

  function cut(text, limit) { return text ? String(text).slice(0, limit) : undefined; }

  var kesher = {
    loaded: true,
    track: function (type, properties) {
      if (typeof type !== "string" || !type) { return; }
      send("/t/collect", {key: key, anonymous_id: visitor,
        events: [{type: type, ts: new Date().toISOString(), properties: properties || {}}]});
    },
    page: function (properties) {
      var props = {url: cut(w.location.href, 4000), title: cut(d.title, 1000), referrer: cut(d.referrer, 4000)}, name;
      for (name in properties) { if (properties.hasOwnProperty(name)) { props[name] = properties[name]; } }
      kesher.track("page_view", props);
    },
    identify: function (who) {
      if (!who || !(who.email || who.phone)) { return; }
      send("/t/identify", who.email ? {key: key, anonymous_id: visitor, email: String(who.email)}
        : {key: key, anonymous_id: visitor, phone: String(who.phone)});
    },
    // On log-out: the next person on this browser starts as a new, anonymous visitor.
    reset: function () { visitor = randomId(); saveId(visitor); }
  };

  var waiting = w.kesher && w.kesher.q;
  w.kesher = kesher;
  kesher.page();
  for (var i = 0; waiting && i < waiting.length; i++) {
    if (kesher[waiting[i][0]]) { kesher[waiting[i][0]].apply(kesher, waiting[i][1]); }
  }
}(window, document));
