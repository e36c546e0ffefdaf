// Stream the grain's debug log into the page while its panel is open.
"use strict";
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
