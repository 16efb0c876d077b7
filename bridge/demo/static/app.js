// The demo page's logic. Behind bridge, /prices/DEMO is a push stream made from the app's
// /api/prices, over Server-Sent Events or WebSocket (the toggle); without bridge that path does
// not exist, so the page falls back to polling /api/prices itself, once a second, like the
// legacy app it stands for. The page also says what it sees: the negotiated protocol, how its
// assets came, events and reconnects, and the app's poll count against the number of viewers.
// A reload resumes from the last event id (kept in sessionStorage), so no event comes twice.
(function () {
  "use strict";
  var POLL_URL = "/api/prices?symbol=DEMO";
  var STREAM_PATH = "/prices/DEMO";
  var LOG_LINES = 8;
  var ID_KEY = "bridge-demo-last-id";
  var TRANSPORT_KEY = "bridge-demo-transport";
  // bridge's event names: "price" (this demo's config), "message" (the default), "reset" and
  // "snapshot" (the whole state when a resume point is gone); patch/merge streams add those.
  var EVENTS = ["price", "message", "reset", "snapshot"];

  function $(id) { return document.getElementById(id); }
  var state = window.bridgeDemo = {
    transport: sessionStorage.getItem(TRANSPORT_KEY) || "sse",
    events: 0, reconnects: 0, ids: [], protocol: "", lastId: sessionStorage.getItem(ID_KEY),
    resumedFrom: sessionStorage.getItem(ID_KEY), mode: "connecting"
  };
  var last = null, polling = null, source = null, socket = null, opened = false, retryTimer = null;

  function setMode(text, kind) {
    state.mode = text;
    $("mode").textContent = text;
    $("mode").className = "badge" + (kind ? " " + kind : "");
  }

  function show(data, how) {
    var value = Number(data && data.price);
    if (!isFinite(value)) return;
    $("price").textContent = value.toFixed(2);
    $("price").className = "price" + (last === null ? "" : value > last ? " up" : value < last ? " down" : "");
    last = value;
    $("time").textContent = data.time || "";
    var item = document.createElement("li");
    item.textContent = (data.time || "") + "  " + value.toFixed(2) + "  (" + how + ")";
    $("log").insertBefore(item, $("log").firstChild);
    while ($("log").children.length > LOG_LINES) $("log").removeChild($("log").lastChild);
  }

  // A trade: from the click to the first price carrying it. Behind bridge the app's
  // Bridge-Notify header makes that milliseconds; polling alone, up to the interval.
  var trade = null, trades = 0;
  function traded(data, how) {
    if (data && Number(data.trades) > trades) trades = Number(data.trades);
    if (trade === null || !data || !(Number(data.trades) >= trade.count)) return;
    var ms = Math.round(performance.now() - trade.at);
    state.tradeMs = ms;
    $("trade-result").textContent = "trade " + trade.count + " reached this page in " + ms +
      " ms (" + how + (how === "polled" ? ": polling alone waits for the next poll" :
      ": the app's Bridge-Notify header made bridge re-poll at once") + ")";
    trade = null;
  }
  $("trade").addEventListener("click", function () {
    // The pushed price may come back before the POST's own answer: expect the next count now.
    trade = { count: trades + 1, at: performance.now() };
    fetch("/api/trade?symbol=DEMO", { method: "POST", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); })
      .catch(function () { $("trade-result").textContent = "the trade failed"; });
  });

  function received(id, data, how) {
    opened = true;
    state.events += 1;
    if (id) {
      state.lastId = id;
      state.ids.push(id);
      if (state.ids.length > 100) state.ids.shift();
      sessionStorage.setItem(ID_KEY, id);
      $("last-id").textContent = id;
    }
    $("events").textContent = String(state.events);
    setMode("pushed by bridge (" + (state.transport === "sse" ? "SSE" : "WebSocket") + ")", "push");
    show(data, how);
    traded(data, how);
  }

  function reconnected() {
    state.reconnects += 1;
    $("reconnects").textContent = String(state.reconnects);
  }

  function streamUrl(scheme) {
    var url = STREAM_PATH + (state.lastId ? "?last_event_id=" + encodeURIComponent(state.lastId) : "");
    if (!scheme) return url;
    return scheme + "//" + location.host + url;
  }

  // --- Server-Sent Events --------------------------------------------------------------------
  function openSse() {
    if (!window.EventSource) { startPolling(); return; }
    // EventSource sends Last-Event-ID itself on its own reconnects; the query carries it
    // across a page reload, which EventSource knows nothing about.
    source = new EventSource(streamUrl());
    EVENTS.forEach(function (name) {
      source.addEventListener(name, function (event) {
        var data = null;
        try { data = JSON.parse(event.data); } catch (e) { /* not JSON */ }
        received(event.lastEventId, data, "pushed, SSE");
      });
    });
    source.onerror = function () {
      // Before any event: no stream here (no bridge), so poll. Later: EventSource reconnects
      // by itself (after bridge's jittered `retry:`), unless it gave up (CLOSED).
      if (!opened || source.readyState === EventSource.CLOSED) {
        source.close();
        source = null;
        startPolling();
      } else {
        reconnected();
        setMode("reconnecting", "");
      }
    };
  }

  // --- WebSocket -----------------------------------------------------------------------------
  function openWebSocket() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(streamUrl(scheme));
    var ws = socket;
    ws.onmessage = function (message) {
      var envelope;
      try { envelope = JSON.parse(message.data); } catch (e) { return; }
      received(envelope.id, envelope.data, "pushed, WebSocket");
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;  // closed by the toggle
      socket = null;
      if (!opened) { startPolling(); return; }
      // 1001: bridge is restarting; 1013: this client lagged. Either way come back, spread
      // out, and resume from the last id.
      reconnected();
      setMode("reconnecting (close " + event.code + ")", "");
      retryTimer = setTimeout(openWebSocket, 500 + Math.random() * 1500);
    };
  }

  // --- polling fallback (the app without bridge) ---------------------------------------------
  function startPolling() {
    if (polling !== null) return;
    setMode("polling every second", "poll");
    function tick() {
      fetch(POLL_URL, { cache: "no-cache" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { show(data, "polled"); traded(data, "polled"); })
        .catch(function () { setMode("app unreachable, retrying", "poll"); });
    }
    tick();
    polling = setInterval(tick, 1000);
  }

  function connect() {
    opened = false;
    if (state.transport === "websocket" && window.WebSocket) openWebSocket(); else openSse();
  }

  function disconnect() {
    if (source !== null) { source.close(); source = null; }
    if (socket !== null) { var ws = socket; socket = null; ws.close(1000, "switching"); }
    if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
  }

  Array.prototype.forEach.call(document.querySelectorAll("input[name=transport]"), function (input) {
    input.checked = input.value === state.transport;
    input.addEventListener("change", function () {
      if (!input.checked || polling !== null) return;
      state.transport = input.value;
      sessionStorage.setItem(TRANSPORT_KEY, input.value);
      disconnect();
      connect();
    });
  });

  // --- what the page can tell about itself ---------------------------------------------------
  function describeProtocol() {
    var nav = performance.getEntriesByType("navigation")[0];
    state.protocol = (nav && nav.nextHopProtocol) || "unknown";
    $("protocol").textContent = state.protocol;
  }

  function describeAssets() {
    var parts = performance.getEntriesByType("resource").filter(function (entry) {
      return entry.name.indexOf("/static/") !== -1;
    }).map(function (entry) {
      // Chromium has taken no HTTP/2 push since version 106; Firefox and curl still may.
      var how = entry.initiatorType === "early-hints" ? "preloaded by 103 Early Hints"
        : entry.transferSize === 0 && entry.decodedBodySize > 0 ? "from cache or server push"
        : entry.initiatorType === "link" ? "preloaded (bridge's Link: rel=preload, or the page's <link>)"
        : "fetched by the page (" + entry.initiatorType + ")";
      how += entry.nextHopProtocol ? ", " + entry.nextHopProtocol : "";
      return entry.name.replace(/^.*\/static\//, "") + ": " + how;
    });
    $("assets").textContent = parts.length ? parts.join("; ") : "none measured";
  }

  // The poll rate is measured from the first reading on, so the first reading has none yet;
  // and until this page's own stream is counted there is no viewer to share a poll with.
  var first = null;
  function describeFanout() {
    fetch("/api/stats", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (stats) {
        var now = Date.now();
        if (first === null) first = { polls: stats.polls, at: now };
        var seconds = (now - first.at) / 1000;
        var viewers = stats.viewers;
        state.polls = stats.polls;
        state.viewers = viewers;
        var rate = seconds >= 1
          ? " (about " + ((stats.polls - first.polls) / seconds).toFixed(1) + " a second)"
          : "";
        $("fanout").textContent = viewers === null
          ? "the app has answered " + stats.polls + " polls"
          : !viewers
          ? "the app was polled " + stats.polls + " times; counting viewers once this" +
            " page's stream is connected"
          : "the app was polled " + stats.polls + " times" + rate + " for " + viewers +
            " viewer" + (viewers === 1 ? "" : "s") + ": one poll for all of them, where" +
            " polling browsers would make " + viewers + " a second. Open more tabs: the poll" +
            " rate stays.";
      })
      .catch(function () { /* no stats: the app alone */ });
  }

  if (state.resumedFrom) {
    $("resumed").textContent = "(resumed from id " + state.resumedFrom + " after a reload)";
  }
  describeProtocol();
  connect();
  window.addEventListener("load", function () { describeAssets(); });
  describeFanout();
  setInterval(describeFanout, 2000);
})();
