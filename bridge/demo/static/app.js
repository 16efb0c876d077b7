// The demo page's logic. Behind bridge, /prices/DEMO is a push stream (SSE) made from the
// app's /api/prices; without bridge that path does not exist, so the page falls back to
// polling /api/prices itself, once a second, like the legacy app it stands for.
(function () {
  "use strict";
  var POLL_URL = "/api/prices?symbol=DEMO";
  var STREAM_URL = "/prices/DEMO";
  var LOG_LINES = 8;

  var priceEl = document.getElementById("price");
  var modeEl = document.getElementById("mode");
  var timeEl = document.getElementById("time");
  var logEl = document.getElementById("log");
  var last = null;
  var polling = null;

  function setMode(text, kind) {
    modeEl.textContent = text;
    modeEl.className = "badge" + (kind ? " " + kind : "");
  }

  function show(data, how) {
    var value = Number(data.price);
    if (!isFinite(value)) return;
    priceEl.textContent = value.toFixed(2);
    priceEl.className = "price" + (last === null ? "" : value > last ? " up" : value < last ? " down" : "");
    last = value;
    timeEl.textContent = data.time || "";
    var item = document.createElement("li");
    item.textContent = (data.time || "") + "  " + value.toFixed(2) + "  (" + how + ")";
    logEl.insertBefore(item, logEl.firstChild);
    while (logEl.children.length > LOG_LINES) logEl.removeChild(logEl.lastChild);
  }

  function startPolling() {
    if (polling !== null) return;
    setMode("polling every second", "poll");
    function tick() {
      fetch(POLL_URL, { cache: "no-cache" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { show(data, "polled"); })
        .catch(function () { setMode("app unreachable, retrying", "poll"); });
    }
    tick();
    polling = setInterval(tick, 1000);
  }

  if (!window.EventSource) { startPolling(); return; }

  var source = new EventSource(STREAM_URL);
  var opened = false;
  function onEvent(event) {
    opened = true;
    setMode("pushed by bridge", "push");
    try { show(JSON.parse(event.data), "pushed"); } catch (e) { /* not JSON: ignore */ }
  }
  // The demo config names the event "price"; "message" is bridge's default name and
  // "reset" the snapshot sent when a resume point is gone.
  ["price", "message", "reset", "snapshot"].forEach(function (name) {
    source.addEventListener(name, onEvent);
  });
  source.onerror = function () {
    // Before any event: there is no stream here (no bridge), so poll. Later errors are
    // reconnected by EventSource itself unless it gave up (CLOSED).
    if (!opened || source.readyState === EventSource.CLOSED) {
      source.close();
      startPolling();
    } else {
      setMode("reconnecting", "");
    }
  };
})();
