// Progressive enhancement for the new-case form: drag and drop, and a progress bar.
// Without this script the form posts every photograph at once and the server redirects.
// With it, the case is created first, then each photograph is uploaded and analysed in
// turn, so the bar shows both the upload and the analysis.
(function () {
  "use strict";
  var form = document.getElementById("case-form");
  var input = document.getElementById("images");
  var zone = document.getElementById("dropzone");
  var chosen = document.getElementById("chosen");
  var submit = document.getElementById("submit");
  var block = document.getElementById("progress-block");
  var bar = document.getElementById("upload-progress");
  var label = document.getElementById("progress-label");
  var text = document.getElementById("progress-text");
  var errors = document.getElementById("upload-errors");
  if (!form || !input || !zone || !window.FormData || !window.XMLHttpRequest) { return; }

  Array.prototype.forEach.call(zone.querySelectorAll("[data-js-only]"), function (el) {
    el.hidden = false;
  });

  function showCount() {
    var n = input.files ? input.files.length : 0;
    chosen.textContent = n ? n + (n === 1 ? " photograph chosen" : " photographs chosen") : "";
  }
  input.addEventListener("change", showCount);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragover"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragover"); });
  });
  zone.addEventListener("drop", function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) { input.files = files; showCount(); }
  });

  function post(url, data, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      if (onProgress) {
        xhr.upload.addEventListener("progress", function (e) {
          if (e.lengthComputable) { onProgress(e.loaded / e.total); }
        });
      }
      xhr.onload = function () {
        var body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) { resolve(body); return; }
        var message = body.error ? body.error.message : "The server answered " + xhr.status + ".";
        reject(new Error(message));
      };
      xhr.onerror = function () { reject(new Error("The connection was lost.")); };
      xhr.send(data);
    });
  }

  function addError(message) {
    var li = document.createElement("li");
    li.textContent = message;
    errors.appendChild(li);
  }

  form.addEventListener("submit", function (event) {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length || !form.checkValidity()) { return; }  // the browser shows what is missing
    event.preventDefault();
    submit.disabled = true;
    block.hidden = false;
    errors.textContent = "";
    var meta = new FormData(form);
    meta.delete("images");
    meta.append("files_follow", String(files.length));
    var token = form.querySelector("input[name=csrf_token]").value;
    var total = files.length;
    var done = 0;
    function update(partial) {
      bar.value = Math.round(100 * (done + partial) / total);
      label.textContent = "Uploading and analysing";
      text.textContent = done + " of " + total + " analysed";
    }
    post(form.action, meta).then(function (created) {
      update(0);
      return files.reduce(function (chain, file) {
        return chain.then(function () {
          var data = new FormData();
          data.append("csrf_token", token);
          data.append("images", file, file.name);
          return post(created.fields_url, data, function (f) { update(0.9 * f); })
            .then(function (answer) {
              var field = answer.images && answer.images[0];
              if (field && field.status === "refused") { addError(file.name + ": " + field.label); }
            }, function (error) { addError(file.name + ": " + error.message); })
            .then(function () { done += 1; update(0); });
        });
      }, Promise.resolve()).then(function () {
        text.textContent = "All " + total + " analysed. Opening the case…";
        window.location.assign(created.url);
      });
    }).catch(function (error) {
      submit.disabled = false;
      block.hidden = true;
      var alert = document.getElementById("error") || document.createElement("div");
      alert.id = "error";
      alert.className = "alert";
      alert.setAttribute("role", "alert");
      alert.tabIndex = -1;
      alert.textContent = error.message;
      form.parentNode.insertBefore(alert, form);
      alert.focus();
    });
  });
})();

var caseError = document.getElementById("error");
if (caseError) { caseError.focus({ preventScroll: true }); }
