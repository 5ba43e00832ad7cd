// The page's logic: model picker, image and video uploads, results. Plain JavaScript, no
// build step and no network access beyond this server. Text from the server or from file
// names is always set as textContent, never parsed as HTML.
"use strict";

const state = { config: null, results: [], player: null };

function $(id) {
  return document.getElementById(id);
}

// An element with attributes and children (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// JSON from the API; a failure throws an Error carrying the server's message.
async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error(`the server cannot be reached (${err.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

// The server refuses uploads over its limits too; checking first spares sending them.
function checkSize(file, limit, kind) {
  if (file.size > limit) {
    throw new Error(`${file.name}: ${megabytes(file.size)}, over the ${megabytes(limit)} ` +
      `limit for ${kind}s`);
  }
}

function modelForm() {
  const form = new FormData();
  form.append("model", $("model").value);
  if ($("model2").value) form.append("model", $("model2").value);
  form.append("alpha", String($("opacity").value / 100));
  if ($("postprocess").checked) form.append("postprocess", "1");
  return form;
}

function colorChip(color) {
  return el("span", { class: "chip", style: `background:${color}` });
}

function showModels(config) {
  const rows = $("model-info").querySelector("tbody");
  for (const model of config.models) {
    for (const select of [$("model"), $("model2")]) {
      select.append(el("option", { value: model.name }, model.name));
    }
    const classes = el("span", { class: "classes" });
    for (const cls of model.classes) {
      classes.append(el("span", { class: "class" }, colorChip(cls.color), cls.name));
    }
    const backend = `${model.backend}, ${model.threads} thread${model.threads > 1 ? "s" : ""}`;
    rows.append(el("tr", {},
      el("td", { title: model.model_dir }, model.name), el("td", {}, model.input_size),
      el("td", {}, backend), el("td", {}, model.precision), el("td", {}, classes)));
  }
  $("postprocess-toggle").hidden = !config.postprocess;
  for (const name of config.samples) {
    const button = el("button", { type: "button", class: "sample", title: name },
      el("img", { src: `/api/samples/${encodeURIComponent(name)}`, alt: name }));
    button.addEventListener("click", () => {
      const form = modelForm();
      form.append("sample", name);
      segment(form, name);
    });
    $("samples").append(button);
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot show the result image"));
    image.src = src;
  });
}

// Blends the colour-coded labels over the input at the slider's opacity.
function drawOverlay(result) {
  const canvas = result.canvas;
  const context = canvas.getContext("2d");
  context.globalAlpha = 1;
  context.drawImage(result.input, 0, 0);
  context.globalAlpha = $("opacity").value / 100;
  context.drawImage(result.color, 0, 0);
}

function figure(content, caption) {
  return el("figure", {}, content, el("figcaption", {}, caption));
}

function latencyText(latency, index) {
  const threads = `${latency.threads} thread${latency.threads > 1 ? "s" : ""}`;
  return el("p", { class: "latency", id: `latency-${index}` },
    "Latency ", el("span", { class: "value" }, latency.median_ms.toFixed(2)), " ms ",
    el("span", { class: "detail" },
      `(median of ${latency.runs} runs, ${latency.backend}, ${threads})`));
}

function legendList(legend) {
  const list = el("ul", { class: "legend" });
  for (const entry of legend) {
    list.append(el("li", {}, colorChip(entry.color), `${entry.name} `,
      el("span", { class: "share" }, `${(100 * entry.share).toFixed(1)}%`)));
  }
  return list;
}

async function showResults(body, source) {
  const input = await loadImage(body.input);
  const container = $("results");
  const results = [];
  const blocks = [];
  for (const [index, result] of body.results.entries()) {
    const color = await loadImage(result.color);
    const canvas = el("canvas", { id: `overlay-${index}`, width: body.width, height: body.height });
    const inputView = el("img", { id: `input-${index}`, src: body.input, alt: source });
    const labelsView = el("img", { id: `labels-${index}`, src: result.color, alt: "labels" });
    const title = result.postprocessed ? `${result.model} (post-processed)` : result.model;
    blocks.push(el("div", { class: "result" },
      el("h3", {}, title),
      latencyText(result.latency, index),
      el("div", { class: "panels" },
        figure(inputView, `Input: ${source} (${body.width}x${body.height})`),
        figure(labelsView, "Labels"), figure(canvas, "Overlay")),
      legendList(result.legend)));
    results.push({ input, color, canvas });
  }
  container.replaceChildren(...blocks);
  state.results = results;
  results.forEach(drawOverlay);
  const agreement = $("agreement");
  agreement.hidden = body.agreement === undefined;
  if (!agreement.hidden) {
    agreement.replaceChildren("Label agreement: ",
      el("span", { class: "value" }, `${(100 * body.agreement).toFixed(2)}%`),
      ` of the pixels (${body.results[0].model} vs ${body.results[1].model})`);
  }
}

async function segment(form, source) {
  showError("");
  $("image-status").textContent = `Segmenting ${source}...`;
  try {
    const body = await api("/api/segment", { method: "POST", body: form });
    await showResults(body, source);
    $("image-status").textContent = "";
  } catch (err) {
    $("image-status").textContent = "";
    showError(err.message);
  }
}

function onImageFile(event) {
  const file = event.target.files[0];
  event.target.value = ""; // choosing the same file again uploads it again
  if (!file) return;
  try {
    checkSize(file, state.config.limits.image_bytes, "image");
  } catch (err) {
    showError(err.message);
    return;
  }
  const form = modelForm();
  form.append("image", file, file.name);
  segment(form, file.name);
}

function stopPlayer() {
  if (state.player) clearInterval(state.player);
  state.player = null;
}

// Overlay frames as JPEG images, for servers whose OpenCV cannot write WebM: drawn in turn
// on a canvas at the video's frame rate.
function playFrames(job, container) {
  const frames = [];
  for (let i = 0; i < job.frames; i++) {
    const image = new Image();
    image.src = `/api/video/${job.job}/frames/${i}.jpg`;
    frames.push(image);
  }
  const canvas = el("canvas", { id: "video-frames" });
  container.append(canvas);
  let index = 0;
  state.player = setInterval(() => {
    const image = frames[index];
    if (!image.complete || !image.naturalWidth) return; // still loading
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    canvas.getContext("2d").drawImage(image, 0, 0);
    index = (index + 1) % frames.length;
  }, 1000 / job.fps);
}

function showVideo(job) {
  const container = $("video-result");
  const threads = `${job.threads} thread${job.threads > 1 ? "s" : ""}`;
  const summary = el("p", { class: "latency", id: "video-latency" },
    `${job.frames} frame${job.frames > 1 ? "s" : ""} of ${job.name} through ${job.model}: `,
    "mean latency ", el("span", { class: "value" }, job.mean_latency_ms.toFixed(2)),
    ` ms per frame (${job.backend}, ${threads})`);
  container.replaceChildren(summary);
  if (job.skipped.length) {
    container.append(el("p", { class: "warning" },
      `${job.skipped.length} frame(s) skipped: ${job.skipped.join("; ")}`));
  }
  if (job.format === "webm") {
    const video = el("video", {
      id: "video-overlay", src: `/api/video/${job.job}/overlay.webm`,
      controls: "", autoplay: "", loop: "", playsinline: "",
    });
    // Browsers autoplay muted videos only, and the muted attribute added by script does not
    // mute; the overlay has no sound anyway.
    video.muted = true;
    container.append(video);
  } else {
    playFrames(job, container);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function onVideoFile(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  showError("");
  stopPlayer();
  $("video-result").replaceChildren();
  const progress = $("video-progress");
  const status = $("video-status");
  try {
    checkSize(file, state.config.limits.video_bytes, "video");
    const form = modelForm();
    form.delete("model");
    form.append("model", $("model").value); // one model per video
    form.append("video", file, file.name);
    status.textContent = `Uploading ${file.name}...`;
    let job = await api("/api/video", { method: "POST", body: form });
    progress.hidden = false;
    while (job.state === "queued" || job.state === "running") {
      // Without a frame count from the container the bar stays indeterminate.
      if (job.total) progress.value = job.done / job.total;
      else progress.removeAttribute("value");
      status.textContent = `${job.state}: ${job.done}${job.total ? ` / ${job.total}` : ""} frames`;
      await sleep(300);
      job = await api(`/api/video/${job.job}`);
    }
    if (job.state === "error") throw new Error(job.error);
    progress.value = 1;
    status.textContent = "";
    showVideo(job);
  } catch (err) {
    status.textContent = "";
    showError(err.message);
  } finally {
    progress.hidden = true;
  }
}

async function main() {
  try {
    state.config = await api("/api/models");
  } catch (err) {
    showError(`cannot load the models: ${err.message}`);
    return;
  }
  showModels(state.config);
  $("image-file").addEventListener("change", onImageFile);
  $("video-file").addEventListener("change", onVideoFile);
  $("opacity").addEventListener("input", () => {
    $("opacity-value").textContent = `${$("opacity").value}%`;
    state.results.forEach(drawOverlay);
  });
  document.body.dataset.ready = "1";
}

main();
