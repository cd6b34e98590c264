// Keyboard help for every page (loaded by base.html; no inline script: the CSP forbids it).
// 1. A long grid of links ([data-roving], e.g. a case's fields and its cell gallery, and the
//    verdict's and the review's lists of fields) is one tab stop: the arrow keys, Home and End move inside it (a "roving tabindex"). Without
//    this script every link is a tab stop of its own, which still works.
// 2. After a form's redirect, focus goes to the message it left (a sign-off, an upload),
//    unless the page's own script has already put the focus somewhere.
(function () {
  "use strict";

  function links(group) {
    return Array.prototype.filter.call(group.querySelectorAll("a[href]"), function (a) {
      return a.offsetParent !== null;  // a hidden link is no place to move to
    });
  }

  function makeCurrent(items, chosen) {
    items.forEach(function (a) { a.tabIndex = a === chosen ? 0 : -1; });
  }

  // The item above or below ``from``: the nearest one by x in the next row that way.
  function vertical(items, from, step) {
    var box = from.getBoundingClientRect();
    var best = null;
    var bestScore = Infinity;
    items.forEach(function (a) {
      var other = a.getBoundingClientRect();
      var down = other.top - box.top;
      if (step > 0 ? down <= box.height / 2 : down >= -box.height / 2) { return; }
      var score = Math.abs(down) * 1000 + Math.abs(other.left - box.left);
      if (score < bestScore) { bestScore = score; best = a; }
    });
    return best;
  }

  function target(items, current, key) {
    var at = items.indexOf(current);
    switch (key) {
      case "ArrowRight": return items[Math.min(at + 1, items.length - 1)];
      case "ArrowLeft": return items[Math.max(at - 1, 0)];
      case "ArrowDown": return vertical(items, current, 1);
      case "ArrowUp": return vertical(items, current, -1);
      case "Home": return items[0];
      case "End": return items[items.length - 1];
      default: return undefined;
    }
  }

  function rove(group) {
    var items = links(group);
    if (!items.length) { return; }
    makeCurrent(items, items[0]);
    group.addEventListener("focusin", function (event) {
      var fresh = links(group);
      if (fresh.indexOf(event.target) >= 0) { makeCurrent(fresh, event.target); }
    });
    group.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) { return; }
      var fresh = links(group);
      // A form control inside the group (a cell's class) keeps its own keys.
      if (fresh.indexOf(document.activeElement) < 0) { return; }
      var next = target(fresh, document.activeElement, event.key);
      if (next === undefined) { return; }
      event.preventDefault();  // the arrows move focus here, not the page
      if (next) { makeCurrent(fresh, next); next.focus(); }
    });
    items.forEach(function (a) { a.setAttribute("aria-describedby", "roving-hint"); });
  }

  // Said with each link of a group, so a screen reader's user learns the keys.
  function addHint() {
    var hint = document.createElement("p");
    hint.id = "roving-hint";
    hint.className = "visually-hidden";
    hint.textContent = "Arrow keys move between these; Home and End go to the first and last.";
    (document.getElementById("content") || document.body).appendChild(hint);
  }

  // The verdict's fields to look at and the review's fields to open can be as long as the
  // grid (the markup of those sections is theirs; the keys are the same everywhere).
  var groups = document.querySelectorAll("[data-roving], #flagged-fields, #review-flagged");
  if (groups.length) { addHint(); }
  Array.prototype.forEach.call(groups, rove);

  var flash = document.querySelector(".flash[tabindex]");
  if (flash && (document.activeElement === document.body || !document.activeElement)) {
    flash.focus({ preventScroll: true });
  }
})();
