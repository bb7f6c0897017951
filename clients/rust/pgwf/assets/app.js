// pgwf dashboard: live updates and the action buttons. Served as /static/app.js (the page's
// Content-Security-Policy allows no inline script). Values from the server are only ever set
// with textContent or as DOM nodes parsed from our own escaped HTML.
(function () {
  "use strict";
  var live = document.getElementById("live");
  function setLive(text, on) {
    if (live) { live.textContent = text; live.className = "live " + (on ? "on" : "off"); }
  }

  // Live updates: /events sends "change" when runs, steps, queues, executors or schedules
  // change (a 1 s poll on the server); the page then fetches itself and swaps <main>.
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var next = doc.getElementById("main"), cur = document.getElementById("main");
        if (next && cur && next.innerHTML !== cur.innerHTML) {
          cur.replaceWith(document.adoptNode(next));
        }
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  if (window.EventSource) {
    var es = new EventSource("/events");
    es.addEventListener("hello", function () { setLive("live", true); });
    es.addEventListener("change", function () { setLive("live", true); refresh(); });
    es.onerror = function () { setLive("reconnecting", false); };
  } else {
    setLive("static", false);
  }

  // Actions (only rendered with --allow-actions): POST with a custom header (the server's
  // CSRF guard), show the server's answer.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-action]") : null;
    if (!b) { return; }
    var bar = b.closest("[data-id]");
    var id = bar.getAttribute("data-id"), action = b.getAttribute("data-action");
    var q = "id=" + encodeURIComponent(id);
    if (action === "fork") {
      q += "&from_step=" + encodeURIComponent(document.getElementById("fork-step").value);
    } else if (!window.confirm(action + " " + id + "?")) {
      return;
    }
    var out = document.getElementById("action-result");
    out.textContent = action + "…";
    fetch("/action/" + action + "?" + q, { method: "POST", headers: { "X-Pgwf-Action": "1" } })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        out.textContent = "";
        out.className = res.ok ? "ok" : "error";
        out.appendChild(document.createTextNode(res.message + " "));
        if (res.ok && res.workflow_id) {
          var a = document.createElement("a");
          a.href = "/run?id=" + encodeURIComponent(res.workflow_id);
          a.textContent = "open " + res.workflow_id;
          out.appendChild(a);
        }
        refresh();
      })
      .catch(function (e) { out.className = "error"; out.textContent = String(e); });
  });
})();
