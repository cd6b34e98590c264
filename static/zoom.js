// The full-resolution field: zoom (the stage grows inside a scrolling box) and heat opacity.
// Without this script the field shows at the box's width and opens on its own by a link.
(function () {
  "use strict";
  var zoom = document.getElementById("zoom");
  var opacity = document.getElementById("full-heat-opacity");
  var stage = document.getElementById("zoom-stage");
  var heat = document.getElementById("full-heat");
  if (!zoom || !opacity || !stage || !heat) { return; }
  zoom.parentNode.hidden = false;
  function apply() {
    stage.style.width = zoom.value + "%";
    heat.style.opacity = String(Number(opacity.value) / 100);
  }
  zoom.addEventListener("input", apply);
  opacity.addEventListener("input", apply);
  apply();
})();
