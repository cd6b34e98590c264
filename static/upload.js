// Progressive enhancement for the upload form: image preview and drag-and-drop.
// The form works without this script (plain file input + submit).
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("image");
  var zone = document.getElementById("dropzone");
  var preview = document.getElementById("preview");
  var submit = document.getElementById("submit");
  if (!form || !input || !zone || !preview) { return; }

  Array.prototype.forEach.call(zone.querySelectorAll("[data-js-only]"), function (el) {
    el.hidden = false;
  });

  function showPreview() {
    var file = input.files && input.files[0];
    if (!file || !/^image\//.test(file.type)) {
      preview.hidden = true;
      preview.removeAttribute("src");
      return;
    }
    // A data: URI, allowed by the page's Content-Security-Policy (img-src data:).
    var reader = new FileReader();
    reader.onload = function () {
      preview.src = reader.result;
      preview.hidden = false;
    };
    reader.readAsDataURL(file);
  }

  input.addEventListener("change", showPreview);

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.remove("dragover");
    });
  });
  zone.addEventListener("drop", function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    var note = document.getElementById("drop-note");
    if (files && files.length > 1) {
      // One image per quick check: several are a case, never silently cut to the first.
      if (note) { note.hidden = false; }
      return;
    }
    if (note) { note.hidden = true; }
    if (files && files.length) {
      input.files = files;
      showPreview();
    }
  });

  // The chosen model also travels in the URL, so it survives an upload refused unread (too large).
  var model = document.getElementById("model");
  form.addEventListener("submit", function () {
    if (model) {
      form.action = form.action.split("?")[0] + "?model=" + encodeURIComponent(model.value);
    }
    if (submit) {
      submit.disabled = true;
      submit.textContent = "Analysing…";
    }
  });
})();

// Coming back with the browser's Back button restores the page from cache: re-enable the button.
// After a refused upload, move focus to the message so it is read out first.
var uploadError = document.getElementById("error");
if (uploadError) { uploadError.focus({ preventScroll: true }); }

window.addEventListener("pageshow", function () {
  var submit = document.getElementById("submit");
  if (submit) {
    submit.disabled = false;
    submit.textContent = "Analyse image";
  }
});
