// The cell gallery of a cell model's case (loaded by case_cells.html; no inline script: the CSP
// forbids it). keyboard.js makes the cells one tab stop with the arrow keys between them; here:
// 1. Only the current cell's class and Save button are tab stops, so Tab goes from a cell to
//    its own controls and then out of the gallery. Without this script every control is one.
// 2. On a cell, the keys 1 to 4 choose its class and save it at once (only while a cell has
//    the focus, so they never shadow a screen reader's keys elsewhere).
// 3. After a reclassification the page opens at the cell to go on with (the fragment names its
//    link, so the browser focuses it too), and the change's message is read out with it.
(function () {
  "use strict";

  var gallery = document.getElementById("cell-gallery");
  if (!gallery) { return; }
  var editable = gallery.hasAttribute("data-reclassify");

  function cards() { return Array.prototype.slice.call(gallery.querySelectorAll(".cell-card")); }

  function controls(card) { return card.querySelectorAll("select, button"); }

  function makeCurrent(chosen) {
    cards().forEach(function (card) {
      Array.prototype.forEach.call(controls(card), function (el) {
        el.tabIndex = card === chosen ? 0 : -1;
      });
    });
  }

  if (editable) {
    makeCurrent(cards()[0]);
    gallery.addEventListener("focusin", function (event) {
      var card = event.target.closest(".cell-card");
      if (card) { makeCurrent(card); }
    });
    gallery.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey || !/^[1-9]$/.test(event.key)) { return; }
      var link = event.target.closest(".cell-link");
      var card = link && link.closest(".cell-card");
      var select = card && card.querySelector("select");
      if (!select) { return; }
      var option = select.options[Number(event.key) - 1];
      if (!option) { return; }
      event.preventDefault();
      select.value = option.value;
      select.form.requestSubmit();
    });
  }

  // After keyboard.js (every deferred script has run by now), so the cell becomes current.
  document.addEventListener("DOMContentLoaded", function () {
    var error = document.getElementById("cells-error");
    if (error) { error.focus(); return; }
    var match = /^#cell-(\d+)$/.exec(window.location.hash);
    var link = match && document.getElementById("cell-" + match[1]);
    if (!link) { return; }
    // The message of the change is read out with the cell the focus lands on.
    var flash = document.querySelector(".flash");
    if (flash) {
      flash.id = flash.id || "cells-flash";
      var described = (link.getAttribute("aria-describedby") || "").split(" ");
      link.setAttribute("aria-describedby", [flash.id].concat(described).join(" ").trim());
    }
    link.focus();
  });
})();
