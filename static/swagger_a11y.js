// Accessibility mends for the vendored Swagger UI (/api/docs/try), which renders its own
// markup with React and re-renders it as operations open: each mend is re-applied after
// every change. Colours are mended in style.css; this names what Swagger leaves unnamed.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root) { return; }

  function name(select) {
    if (select.id === "servers") { return "Server"; }
    var row = select.closest("tr[data-param-name]");
    return row ? "Value of " + row.getAttribute("data-param-name") : "Choice";
  }

  function level(selector, value) {
    root.querySelectorAll(selector).forEach(function (h) {
      if (h.getAttribute("aria-level") !== value) { h.setAttribute("aria-level", value); }
    });
  }

  function unnamed(select) {
    if (select.hasAttribute("aria-label")) { return false; }
    // A label that wraps the select and says nothing itself names it only by its options.
    return !Array.prototype.some.call(select.labels || [], function (l) {
      return l.textContent.replace(select.textContent, "").trim() !== "";
    });
  }

  function region(element, label) {
    if (element && element.getAttribute("role") !== "region") {
      element.setAttribute("role", "region");
      element.setAttribute("aria-label", label);
    }
  }

  // The page's own heading and introduction, before Swagger's markup, as one region.
  function introduce() {
    var title = document.getElementById("api-try-title");
    if (!title || title.parentNode.getAttribute("role") === "region") { return; }
    var intro = document.createElement("div");
    intro.setAttribute("role", "region");
    intro.setAttribute("aria-labelledby", "api-try-title");
    title.parentNode.insertBefore(intro, title);
    while (intro.nextSibling && intro.nextSibling !== root) { intro.appendChild(intro.nextSibling); }
  }

  function mend() {
    // Swagger brings its own <main> for its operations: that is the page's main landmark,
    // so the card around it is no landmark, and what sits beside it is put in regions.
    var card = root.closest("section[aria-labelledby]");
    if (card && root.querySelector("main")) { card.removeAttribute("aria-labelledby"); }
    region(root.querySelector(".information-container"), "About this API");
    region(root.querySelector(".schemes-server-container"), "Server and authorisation");
    // Its headings start at h3 under the page's h1: say which level each really is.
    level("h3", "2");
    level("h4", "3");
    level("h5", "4");
    root.querySelectorAll("select").forEach(function (s) {
      if (unnamed(s)) { s.setAttribute("aria-label", name(s)); }
    });
    // A scrolling example must be reachable by keyboard to be scrolled.
    root.querySelectorAll("pre.microlight:not([tabindex])").forEach(function (pre) {
      pre.setAttribute("tabindex", "0");
    });
  }

  introduce();
  new MutationObserver(mend).observe(root, { childList: true, subtree: true });
  mend();
})();
