// Result page: focus the verdict for screen readers and keyboards, and the heatmap's opacity.
// The page works without this script (the heatmap then shows at its default opacity).
(function () {
  "use strict";
  var verdict = document.getElementById("verdict");
  if (verdict) { verdict.focus({ preventScroll: true }); }

  var slider = document.getElementById("heat-opacity");
  var layer = document.getElementById("gradcam");
  if (!slider || !layer) { return; }
  slider.hidden = false;
  function apply() { layer.style.opacity = String(Number(slider.value) / 100); }
  slider.addEventListener("input", apply);
  apply();
})();
