"use strict";
// semcorr app. Two parts: `semcorr`, what every tab shares (the API, errors, uploads, tabs), and the
// "Match two images" tab. Another tab is a <section class="tab"> in index.html plus a script that
// calls semcorr.onReady(...) and the API (see api.py).

const semcorr = (() => {
  let config = null;
  const ready = [];
  const $ = (id) => document.getElementById(id);

  // POST `body` (a File/Blob as is, anything else as JSON) or GET; the JSON answer, or an Error
  // carrying the server's one-line message.
  async function api(path, body, headers = {}) {
    const options = body === undefined ? {} : {
      method: "POST",
      headers: body instanceof Blob ? headers : {"Content-Type": "application/json", ...headers},
      body: body instanceof Blob ? body : JSON.stringify(body),
    };
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      throw new Error("the server cannot be reached (is `semcorr app` still running?)");
    }
    let answer = null;
    try { answer = await response.json(); } catch (error) { /* not JSON: said below */ }
    if (!response.ok) throw new Error(answer && answer.error ? answer.error : `the server answered ${response.status}`);
    if (answer === null) throw new Error("the server's answer is not JSON");
    return answer;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // Check a chosen file against the page's limit before sending it; the stored image's description.
  async function uploadFile(file) {
    const limit = config.limits.max_upload_bytes;
    if (file.size > limit) {
      throw new Error(`${file.name}: ${(file.size / 1e6).toFixed(1)} MB is over this page's upload limit of ` +
                      `${limit / 1e6} MB; use a smaller file (or start the page with a higher --max-upload-mb)`);
    }
    const type = file.type.startsWith("image/") ? file.type : "application/octet-stream";
    return api("/api/images", file, {"Content-Type": type, "X-Filename": encodeURIComponent(file.name)});
  }

  function setupTabs() {
    const nav = $("tabs");
    const sections = [...document.querySelectorAll("section.tab")];
    for (const section of sections) {
      const button = document.createElement("button");
      button.type = "button";
      button.role = "tab";
      button.textContent = section.dataset.title;
      button.dataset.tab = section.id;
      button.addEventListener("click", () => {
        for (const other of sections) other.hidden = other !== section;
        for (const b of nav.children) b.setAttribute("aria-selected", String(b === button));
      });
      nav.appendChild(button);
    }
    if (nav.firstChild) nav.firstChild.click();
    nav.hidden = sections.length < 2;
  }

  async function start() {
    setupTabs();
    try {
      config = await api("/api/config");
    } catch (error) {
      showError(error.message);
      return;
    }
    $("footer").textContent = `semcorr ${config.version} · images stay on the server running this page, ` +
      "in a temporary folder removed when it stops";
    for (const callback of ready) callback(config);
  }

  document.addEventListener("DOMContentLoaded", start);
  return {
    api, showError, clearError, uploadFile, $,
    onReady: (callback) => ready.push(callback),
    config: () => config,
  };
})();

// ---- "Match two images" ---------------------------------------------------------------------
(() => {
  const {$} = semcorr;
  const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                   "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#000075"];
  const state = {images: {a: null, b: null}, points: [], selected: null, result: null, resultText: null,
                 request: 0, nextColour: 0};
  const SVG = "http://www.w3.org/2000/svg";

  function status(text, latency) {
    const box = $("status");
    box.textContent = text;
    if (latency === undefined) delete box.dataset.latencyMs; else box.dataset.latencyMs = latency.toFixed(1);
  }

  function fail(error) {
    semcorr.showError(error.message);
    status("");
  }

  function options() {
    return {model: $("model").value, pose_align: $("pose-align").checked};
  }

  async function setImage(side, image) {
    state.images[side] = image;
    const img = $(`image-${side}`);
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = image.url;
    });
    $(`name-${side}`).textContent = `${image.name} (${image.width}×${image.height})`;
    $(`name-${side}`).title = image.name;
    const example = $(`example-${side}`);
    example.value = [...example.options].some((o) => o.value === image.id) ? image.id : "";
    if (side === "a") {
      state.points = [];
      state.selected = null;
    }
    await prepare();
    await update();
  }

  // Features of both images ahead of the first click.
  async function prepare() {
    if (!state.images.a || !state.images.b) return;
    status("computing features…");
    try {
      const answer = await semcorr.api("/api/prepare", {...options(), images: [state.images.a.id, state.images.b.id]});
      status(`features ready (${answer.ms.toFixed(0)} ms); click image A`);
    } catch (error) {
      fail(error);
    }
  }

  // Match every point; draw the selected one's heatmap. Only the latest request's answer is shown.
  async function update(clicked) {
    const request = ++state.request;
    if (!state.points.length) {
      state.result = state.resultText = null;
      $("heatmap").hidden = true;
      draw();
      return;
    }
    const body = {...options(), image_a: state.images.a.id, image_b: state.images.b.id,
                  points: state.points.map((p) => [p.x, p.y]), heatmap: state.selected};
    try {
      const answer = await semcorr.api("/api/match", body);
      if (request !== state.request) return;
      const heatmap = $("heatmap");
      await new Promise((resolve) => {
        heatmap.onload = resolve;
        heatmap.onerror = resolve;
        heatmap.src = answer.heatmap;
      });
      if (request !== state.request) return;
      heatmap.hidden = false;
      state.result = answer.result;
      state.resultText = answer.result_json;
      semcorr.clearError();
      const server = `server ${answer.timing_ms.total.toFixed(0)} ms`;
      const warning = answer.result.warning ? `; ${answer.result.warning}` : "";
      if (clicked !== undefined) {
        const latency = performance.now() - clicked;
        status(`point ${state.selected + 1}: heatmap in ${latency.toFixed(0)} ms (${server})${warning}`, latency);
      } else {
        status(`${state.points.length} point(s) matched (${server})${warning}`);
      }
      draw();
    } catch (error) {
      if (request === state.request) fail(error);
    }
  }

  function marker(svg, x, y, colour, label, radius, selected) {
    const circle = document.createElementNS(SVG, "circle");
    circle.setAttribute("cx", x);
    circle.setAttribute("cy", y);
    circle.setAttribute("r", radius * (selected ? 1.5 : 1));
    circle.setAttribute("fill", colour);
    circle.setAttribute("stroke-width", radius * (selected ? 0.5 : 0.3));
    svg.appendChild(circle);
    if (selected) {
      const ring = document.createElementNS(SVG, "circle");
      ring.setAttribute("cx", x);
      ring.setAttribute("cy", y);
      ring.setAttribute("r", radius * 3);
      ring.setAttribute("fill", "none");
      ring.setAttribute("stroke", colour);
      ring.setAttribute("stroke-width", radius * 0.6);
      svg.appendChild(ring);
    }
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", x + radius * 1.8);
    text.setAttribute("y", y - radius * 1.2);
    text.setAttribute("font-size", radius * 2.6);
    text.setAttribute("stroke-width", radius * 0.5);
    text.textContent = label;
    svg.appendChild(text);
  }

  // Markers in original-image pixels (the SVG's viewBox), sized for the shown size; the table.
  function draw() {
    const matches = state.result ? state.result.matches : [];
    for (const side of ["a", "b"]) {
      const image = state.images[side];
      const svg = $(`marks-${side}`);
      svg.replaceChildren();
      if (!image) continue;
      svg.setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
      svg.setAttribute("preserveAspectRatio", "none");
      const shown = $(`image-${side}`).getBoundingClientRect().width || image.width;
      const radius = 5 * image.width / shown;
      state.points.forEach((point, i) => {
        const where = side === "a" ? [point.x, point.y] : (matches[i] ? matches[i].target : null);
        if (where) marker(svg, where[0], where[1], point.colour, String(i + 1), radius, i === state.selected);
      });
    }
    const body = $("points").tBodies[0];
    body.replaceChildren();
    state.points.forEach((point, i) => {
      const match = matches[i];
      const row = body.insertRow();
      row.className = i === state.selected ? "selected" : "";
      row.dataset.index = i;
      if (match) {
        [row.dataset.sourceX, row.dataset.sourceY] = match.source;
        [row.dataset.targetX, row.dataset.targetY] = match.target;
      }
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = point.colour;
      const cells = [String(i + 1), `${point.x.toFixed(1)}, ${point.y.toFixed(1)}`,
                     match ? `${match.target[0].toFixed(1)}, ${match.target[1].toFixed(1)}` : "…",
                     match ? match.score.toFixed(3) : ""];
      for (const text of cells) row.insertCell().textContent = text;
      row.cells[0].prepend(swatch);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.title = `remove point ${i + 1}`;
      remove.textContent = "×";
      remove.addEventListener("click", (event) => {
        event.stopPropagation();
        removePoint(i);
      });
      row.insertCell().appendChild(remove);
      row.addEventListener("click", () => {
        state.selected = i;
        update();
      });
    });
    $("download").disabled = !state.resultText;
    $("clear").disabled = !state.points.length;
  }

  function removePoint(index) {
    state.points.splice(index, 1);
    if (state.selected !== null && state.selected >= index) state.selected = Math.max(0, state.selected - 1);
    if (!state.points.length) state.selected = null;
    update();
  }

  function click(event) {
    const clicked = performance.now();
    const image = state.images.a;
    if (!image || !state.images.b) return;
    if (state.points.length >= semcorr.config().limits.max_points) {
      semcorr.showError(`this page matches at most ${semcorr.config().limits.max_points} points at once; remove some`);
      return;
    }
    const rect = $("image-a").getBoundingClientRect();
    const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
    const x = clamp((event.clientX - rect.left) / rect.width * image.width, image.width);
    const y = clamp((event.clientY - rect.top) / rect.height * image.height, image.height);
    state.points.push({x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10,
                       colour: COLOURS[state.nextColour++ % COLOURS.length]});
    state.selected = state.points.length - 1;
    draw();
    update(clicked);
  }

  function download() {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([state.resultText], {type: "application/json"}));
    link.download = "matches.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // What the other tabs read: image A, its points (x, y and colour), the model and the pose toggle.
  semcorr.matchState = () => ({image: state.images.a, points: state.points.map((p) => ({...p})),
                               model: $("model").value, pose_align: $("pose-align").checked});

  semcorr.onReady(async (config) => {
    const models = $("model");
    for (const model of config.models) models.add(new Option(model.label, model.name));
    for (const side of ["a", "b"]) {
      const select = $(`example-${side}`);
      select.add(new Option("uploaded image", ""));
      select.options[0].disabled = true;
      for (const example of config.examples) select.add(new Option(example.name, example.id));
      select.addEventListener("change", () => {
        const example = config.examples.find((e) => e.id === select.value);
        if (example) setImage(side, example).catch(fail);
      });
      $(`upload-${side}`).addEventListener("change", async (event) => {
        const file = event.target.files[0];
        event.target.value = "";
        if (!file) return;
        status(`uploading ${file.name}…`);
        try {
          await setImage(side, await semcorr.uploadFile(file));
          semcorr.clearError();
        } catch (error) {
          fail(error);
        }
      });
    }
    $("image-a").addEventListener("click", click);
    $("model").addEventListener("change", async () => { await prepare(); await update(); });
    $("pose-align").addEventListener("change", async () => { await prepare(); await update(); });
    $("clear").addEventListener("click", () => { state.points = []; state.selected = null; update(); });
    $("download").addEventListener("click", download);
    new ResizeObserver(draw).observe($("image-a"));
    if (config.examples.length >= 2) {
      await setImage("b", config.examples[1]);
      await setImage("a", config.examples[0]);
    }
  });
})();
