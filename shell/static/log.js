// The owner's grain page: the grain bar's state once the frame has loaded (the page was
// rendered while the grain was starting), and the debug log streamed into the page while its
// panel is open.
"use strict";
(function () {
  const state = document.querySelector(".grainbar .state");
  const frame = document.getElementById("grain-frame");
  if (state && frame && state.textContent.trim() === "starting") {
    const grain = new URL(location.href).pathname.split("/")[2];
    frame.addEventListener("load", async () => {
      try {
        const reply = await fetch(`/grains/${grain}/state`);
        if (reply.ok) state.textContent = (await reply.json()).state;
      } catch (_) {
        // The label stays as it was; the next page view shows the state.
      }
    }, { once: true });
  }
})();
(function () {
  const panel = document.getElementById("grain-log");
  if (!panel) return;
  const out = document.getElementById("grain-log-text");
  let controller = null;
  async function follow() {
    controller = new AbortController();
    out.textContent = "";
    try {
      const reply = await fetch(panel.dataset.src, { signal: controller.signal });
      const reader = reply.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.textContent += decoder.decode(value, { stream: true });
        if (atBottom) out.scrollTop = out.scrollHeight;
      }
    } catch (e) {
      if (e.name !== "AbortError") out.textContent += `\n[could not read the log: ${e.message}]\n`;
    }
  }
  panel.addEventListener("toggle", () => {
    if (panel.open) follow();
    else if (controller) controller.abort();
  });
})();
