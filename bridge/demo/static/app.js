// Subscribe to the stream bridge makes of /api/prices; fall back to the app's own polling.
(function () {
  const priceEl = document.getElementById("price");
  const modeEl = document.getElementById("mode");
  const timeEl = document.getElementById("time");
  const logEl = document.getElementById("log");
  let last = null;

  function show(data, how) {
    const value = Number(data.price);
    priceEl.textContent = value.toFixed(2);
    priceEl.className = "price" + (last === null ? "" : value > last ? " up" : value < last ? " down" : "");
    last = value;
    modeEl.textContent = how;
    timeEl.textContent = data.time || "";
    const item = document.createElement("li");
    item.textContent = how + ": " + value.toFixed(2);
    logEl.prepend(item);
    while (logEl.children.length > 8) logEl.lastChild.remove();
  }

  function poll() {
    modeEl.textContent = "polling";
    setInterval(function () {
      fetch("/api/prices?symbol=DEMO").then(function (r) { return r.json(); })
        .then(function (data) { show(data, "polled"); }).catch(function () {});
    }, 1000);
  }

  if (!window.EventSource) { poll(); return; }
  const source = new EventSource("/prices/DEMO");
  let opened = false;
  source.addEventListener("price", function (event) {
    opened = true;
    show(JSON.parse(event.data), "pushed by bridge");
  });
  source.onerror = function () {
    if (!opened) { source.close(); poll(); }
  };
})();
