"use strict";
// semcorr app, "Transfer keypoints": the points clicked on image A carried to a batch of images
// (POST /api/transfer, semcorr.transfer underneath). Uses what semcorr (app.js) shares.
(() => {
  const {$} = semcorr;
  const SVG = "http://www.w3.org/2000/svg";
  const state = {targets: [], answer: null, request: 0};

  function source() {
    const match = semcorr.matchState();
    const text = match.image ? `From image A (${match.image.name}), ${match.points.length} point(s)` :
      "Choose image A in Match two images first";
    $("transfer-source").textContent = match.points.length ? text : `${text}: click some on image A first`;
    return match;
  }

  function refresh() {
    const match = source();
    $("transfer-run").disabled = !match.image || !match.points.length || !state.targets.length;
    $("transfer-clear").disabled = !state.targets.length;
    $("transfer-download").disabled = !state.answer;
  }

  function figure(target, found, colours) {
    const box = document.createElement("figure");
    box.className = "panel thumb";
    box.dataset.id = target.id;
    const stage = document.createElement("div");
    stage.className = "stage";
    const image = document.createElement("img");
    image.src = target.url;
    image.alt = target.name;
    stage.appendChild(image);
    const caption = document.createElement("figcaption");
    caption.textContent = target.name;
    if (found) {
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", `0 0 ${target.width} ${target.height}`);
      svg.setAttribute("preserveAspectRatio", "none");
      const radius = Math.max(4, 0.015 * Math.max(target.width, target.height));
      found.points.forEach(([x, y], i) => {
        const mark = document.createElementNS(SVG, "circle");
        mark.setAttribute("cx", x);
        mark.setAttribute("cy", y);
        mark.setAttribute("r", radius);
        mark.setAttribute("fill", found.visible[i] ? colours[i] : "none");
        mark.setAttribute("stroke", found.visible[i] ? "#fff" : colours[i]);
        mark.setAttribute("stroke-width", radius / 3);
        mark.dataset.confidence = found.confidence[i];
        const title = document.createElementNS(SVG, "title");
        title.textContent = `point ${i + 1}: (${x}, ${y}), confidence ${found.confidence[i].toFixed(2)}` +
          (found.visible[i] ? "" : " (not visible)");
        mark.appendChild(title);
        svg.appendChild(mark);
      });
      stage.appendChild(svg);
      const shown = found.visible.filter(Boolean).length;
      caption.textContent += ` · ${shown} of ${found.points.length} placed`;
    }
    box.append(stage, caption);
    return box;
  }

  function draw() {
    const gallery = $("transfer-targets");
    gallery.replaceChildren();
    const colours = semcorr.matchState().points.map((p) => p.colour);
    const found = state.answer ? new Map(state.answer.targets.map((t) => [t.id, t])) : new Map();
    for (const target of state.targets) gallery.appendChild(figure(target, found.get(target.id), colours));
    refresh();
  }

  async function run() {
    const match = source();
    const request = ++state.request;
    $("transfer-status").textContent = `transferring ${match.points.length} point(s) to ${state.targets.length} image(s)…`;
    try {
      const answer = await semcorr.api("/api/transfer", {
        model: match.model, pose_align: match.pose_align, source: match.image.id,
        points: match.points.map((p) => [p.x, p.y]), targets: state.targets.map((t) => t.id),
        min_confidence: Number($("min-confidence").value)});
      if (request !== state.request) return;
      state.answer = answer;
      semcorr.clearError();
      $("transfer-status").textContent = `done in ${answer.timing_ms.total.toFixed(0)} ms`;
      draw();
    } catch (error) {
      if (request === state.request) {
        semcorr.showError(error.message);
        $("transfer-status").textContent = "";
      }
    }
  }

  function download() {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([state.answer.coco_json], {type: "application/json"}));
    link.download = "labels.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  semcorr.onReady((config) => {
    $("transfer-upload").addEventListener("change", async (event) => {
      const files = [...event.target.files];
      event.target.value = "";
      const room = config.limits.max_targets - state.targets.length;
      if (files.length > room) {
        semcorr.showError(`this page carries points to at most ${config.limits.max_targets} images at once`);
        return;
      }
      try {
        for (const file of files) {
          $("transfer-status").textContent = `uploading ${file.name}…`;
          state.targets.push(await semcorr.uploadFile(file));
        }
        semcorr.clearError();
        $("transfer-status").textContent = "";
      } catch (error) {
        semcorr.showError(error.message);
      }
      state.answer = null;
      draw();
    });
    $("transfer-run").addEventListener("click", run);
    $("transfer-clear").addEventListener("click", () => { state.targets = []; state.answer = null; draw(); });
    $("transfer-download").addEventListener("click", download);
    $("min-confidence").addEventListener("change", () => { if (state.answer) run(); });
    document.querySelector('button[data-tab="tab-transfer"]').addEventListener("click", refresh);
    refresh();
  });
})();
