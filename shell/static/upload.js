// Upload a .gpk with a progress bar, then open the installed app's page.
"use strict";
(function () {
  const form = document.getElementById("upload");
  if (!form) return;
  const input = document.getElementById("gpk");
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const max = Number(form.dataset.max);
  const show = (text, isError) => {
    status.textContent = text;
    status.className = isError ? "error" : "";
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = input.files[0];
    if (!file) return show("Choose a .gpk file first.", true);
    if (file.size > max) return show(`This file is too large (at most ${Math.round(max / 1048576)} MiB).`, true);
    const button = form.querySelector("button");
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    show(`Uploading ${file.name}…`, false);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/apps/upload");
    xhr.setRequestHeader("X-Granary-Csrf", form.dataset.csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
      if (e.loaded === e.total) show("Checking the signature and installing…", false);
    });
    xhr.addEventListener("load", () => {
      let reply = {};
      try { reply = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 200 && reply.url) {
        show(reply.already_installed ? `${reply.title} was already installed.` : `Installed ${reply.title}.`, false);
        window.location.assign(reply.url);
      } else {
        button.disabled = false;
        bar.hidden = true;
        show(reply.error || `The server answered ${xhr.status}; try again.`, true);
      }
    });
    xhr.addEventListener("error", () => {
      button.disabled = false;
      bar.hidden = true;
      show("The upload failed (connection lost). Try again.", true);
    });
    xhr.send(file);
  });
})();
