/* The console's only script: copy buttons, and the live feed of an account's page (SSE with a
   stream token; balances and the entries table change without a reload). No dependencies. */
(function () {
  "use strict";

  function credits(n) { return Number(n).toLocaleString("en-US"); }
  function signed(n) { return n > 0 ? "+" + credits(n) : credits(n); }
  function when(iso) {
    return String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/Z$|\+00:00$/, " UTC");
  }

  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy-target"));
      input.select();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(input.value).then(function () {
          button.textContent = "Copied";
        }, function () {});
      }
    });
  });

  var status = document.getElementById("live-status");
  if (!status) { return; }
  var last = Number(new URL(status.getAttribute("data-stream"), location.href)
    .searchParams.get("after")) || 0;
  var source = null;

  function show(text, live) {
    status.textContent = text;
    status.className = live ? "live on" : "live";
  }

  function setFigure(id, value) {
    var element = document.getElementById(id);
    if (!element) { return; }
    element.textContent = credits(value);
    element.classList.remove("changed");
    void element.offsetWidth; // restart the highlight
    element.classList.add("changed");
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function prepend(entry) {
    var body = document.querySelector("#entries tbody");
    if (!body) { return; }
    var empty = body.querySelector(".empty-row");
    if (empty) { empty.remove(); }
    var row = document.createElement("tr");
    row.setAttribute("data-position", entry.position);
    row.className = "fresh";
    cell(row, when(entry.recorded_at));
    var type = cell(row, "");
    var tag = document.createElement("span");
    tag.className = "type type-" + entry.type;
    tag.textContent = entry.type;
    type.appendChild(tag);
    cell(row, signed(entry.amount), "num " + (entry.amount < 0 ? "neg" : entry.amount > 0 ? "pos" : ""));
    cell(row, credits(entry.balance), "num");
    cell(row, credits(entry.available), "num");
    cell(row, entry.operation || entry.reason || entry.payment_ref || "");
    cell(row, "");
    body.insertBefore(row, body.firstChild);
  }

  function connect(url) {
    source = new EventSource(url);
    source.addEventListener("open", function () { show("live", true); });
    source.addEventListener("entry", function (event) {
      var entry = JSON.parse(event.data);
      if (entry.position <= last) { return; }
      last = entry.position;
      setFigure("balance", entry.balance);
      setFigure("available", entry.available);
      setFigure("held", entry.held);
      prepend(entry);
    });
    source.addEventListener("error", function () {
      show("reconnecting…", false);
      if (source.readyState === EventSource.CLOSED) { setTimeout(renew, 1000); }
    });
  }

  /* A closed feed (its token expired, the server restarted): a new token, from where it was. */
  function renew() {
    fetch(status.getAttribute("data-token-url") + "?after=" + last, { credentials: "same-origin" })
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        if (response.redirected || type.indexOf("json") < 0) { show("signed out", false); return null; }
        if (!response.ok) { show("offline", false); setTimeout(renew, 5000); return null; }
        return response.json();
      })
      .then(function (body) { if (body) { connect(body.url); } })
      .catch(function () { show("offline", false); setTimeout(renew, 5000); });
  }

  connect(status.getAttribute("data-stream"));
})();
