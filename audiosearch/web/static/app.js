// The audiosearch page: search by clip or microphone, results on waveforms, playback, browse, delete, and a
// monitor of a file or the microphone over a WebSocket.
// Plain JavaScript over the /v1 HTTP API of this same process; nothing is loaded from anywhere else.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = {
  collection: localStorage.getItem("audiosearch.collection") || "",
  apiKey: localStorage.getItem("audiosearch.apiKey") || "",
  nextToken: "",
  collections: new Map(), // name -> collection, as last listed (its model says whether tags mean anything)
  untrained: false, // the current collection's model is a random init: its tags are not classifications
  browseGeneration: 0, // bumped by every fresh listing; a reply for an older one is dropped
  originals: new Map(), // audio id -> Promise<{url, peaks, duration}>
  active: null, // {id, button, card, stopAt}
  recorder: null,
};
const PAGE_SIZE = 20;
const WAVE_BUCKETS = 600;

class ApiError extends Error {
  constructor(status, code, reason, message) {
    super(message);
    Object.assign(this, { status, code, reason });
  }
}

// --- HTTP -------------------------------------------------------------------------------------------------------

function authHeaders() {
  return state.apiKey ? { "X-API-Key": state.apiKey } : {};
}

async function api(method, path, { query = {}, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query)) {
    for (const item of [].concat(value)) {
      if (item !== "" && item !== null && item !== undefined) url.searchParams.append(key, item);
    }
  }
  const headers = authHeaders();
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(url, { method, headers, body });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(response.status, error.code || "", error.reason || String(response.status),
      error.message || response.statusText);
  }
  return data;
}

const collectionPath = (suffix = "") => `/v1/collections/${encodeURIComponent(state.collection)}${suffix}`;

function describe(error) {
  return error instanceof ApiError ? `${error.reason}: ${error.message}` : String(error.message || error);
}

let toastTimer = 0;
function toast(message, isError = false) {
  const box = $("#toast");
  box.textContent = message;
  box.classList.toggle("error", isError);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, isError ? 6000 : 3000);
}

// --- formatting ---------------------------------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, seconds);
  const minutes = Math.floor(s / 60);
  const rest = s - minutes * 60;
  return minutes ? `${minutes}:${rest.toFixed(1).padStart(4, "0")}` : `${rest.toFixed(1)}\u00a0s`;
}

function metaPairs(text) {
  return text.split(",").map((item) => item.trim()).filter(Boolean);
}

// --- the model: an untrained one (a seeded random init) has tags that are not classifications ----------------------

function showModel(model) {
  state.untrained = Boolean(model && model.untrained);
  const banner = $("#untrained-banner");
  banner.hidden = !state.untrained;
  banner.textContent = state.untrained
    ? `Untrained model (${model.name} ${model.version}): tags are not classifications, only the outputs of a `
      + "random init. Search by sound still works."
    : "";
}

// --- collections --------------------------------------------------------------------------------------------------

async function loadCollections() {
  const select = $("#collection");
  let collections = [];
  try {
    collections = (await api("GET", "/v1/collections", { query: { page_size: 1000 } })).collections;
  } catch (error) {
    toast(`Could not list collections: ${describe(error)}`, true);
  }
  state.collections = new Map(collections.map((collection) => [collection.name, collection]));
  select.replaceChildren();
  for (const collection of collections) {
    select.append(new Option(`${collection.name} (${collection.audio_count})`, collection.name));
  }
  select.append(new Option("+ New collection…", "__new__"));
  if (!collections.some((c) => c.name === state.collection)) state.collection = collections[0]?.name || "";
  select.value = state.collection || "__new__";
  if (state.collection) localStorage.setItem("audiosearch.collection", state.collection);
  showModel(state.collections.get(state.collection)?.model);
  await refreshBrowse();
}

async function onCollectionChange(event) {
  const value = event.target.value;
  if (value === "__new__") {
    const name = (prompt("Name of the new collection (a-z, 0-9, _):") || "").trim();
    if (name) {
      try {
        await api("POST", "/v1/collections", { body: { name } });
        state.collection = name;
        toast(`Created collection ${name}`);
      } catch (error) {
        toast(`Could not create it: ${describe(error)}`, true);
      }
    }
    await loadCollections();
    return;
  }
  state.collection = value;
  localStorage.setItem("audiosearch.collection", value);
  showModel(state.collections.get(value)?.model);
  $("#results").replaceChildren();
  $("#query").textContent = "";
  await refreshBrowse();
}

// --- originals and waveforms ------------------------------------------------------------------------------------

function original(record) {
  if (!state.originals.has(record.id)) {
    const loading = (async () => {
      const response = await fetch(record.content_url, { headers: authHeaders() });
      if (!response.ok) {
        const error = (await response.json().catch(() => ({}))).error || {};
        throw new ApiError(response.status, error.code || "", error.reason || String(response.status),
          error.message || response.statusText);
      }
      const blob = await response.blob();
      const entry = { url: URL.createObjectURL(blob), peaks: null, duration: record.duration_seconds };
      try {
        const decoder = new OfflineAudioContext(1, 1, 44100);
        const audio = await decoder.decodeAudioData(await blob.arrayBuffer());
        entry.peaks = peaks(audio);
        entry.duration = audio.duration;
      } catch {
        entry.peaks = null; // the browser cannot decode this format; playback may still work
      }
      return entry;
    })();
    loading.catch(() => state.originals.delete(record.id));
    state.originals.set(record.id, loading);
  }
  return state.originals.get(record.id);
}

function peaks(audio) {
  const channels = Array.from({ length: audio.numberOfChannels }, (_, i) => audio.getChannelData(i));
  const length = channels[0].length;
  const size = Math.max(1, Math.floor(length / WAVE_BUCKETS));
  const result = [];
  let loudest = 1e-6;
  for (let start = 0; start < length; start += size) {
    let low = 0;
    let high = 0;
    const end = Math.min(length, start + size);
    for (let i = start; i < end; i += 1) {
      let sample = 0;
      for (const channel of channels) sample += channel[i];
      sample /= channels.length;
      if (sample < low) low = sample;
      if (sample > high) high = sample;
    }
    result.push([low, high]);
    loudest = Math.max(loudest, -low, high);
  }
  return result.map(([low, high]) => [low / loudest, high / loudest]);
}

function drawWave(card) {
  const canvas = $(".wave", card);
  const entry = card.waveEntry;
  const width = Math.max(1, Math.round(canvas.clientWidth * devicePixelRatio));
  const height = Math.max(1, Math.round(canvas.clientHeight * devicePixelRatio));
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);
  if (!entry) return;
  const duration = entry.duration || card.record.duration_seconds || 1;
  const x = (seconds) => Math.round((seconds / duration) * width);
  const styles = getComputedStyle(document.documentElement);
  const range = card.matchRange;
  if (range) {
    context.fillStyle = styles.getPropertyValue("--match");
    context.fillRect(x(range.start_seconds), 0, Math.max(2, x(range.end_seconds) - x(range.start_seconds)), height);
    context.fillStyle = styles.getPropertyValue("--match-edge");
    context.fillRect(x(range.start_seconds), 0, 2 * devicePixelRatio, height);
    context.fillRect(x(range.end_seconds) - 2 * devicePixelRatio, 0, 2 * devicePixelRatio, height);
  }
  const player = $("#player");
  const playing = state.active && state.active.card === card;
  const playedX = playing ? x(player.currentTime) : -1;
  if (entry.peaks) {
    const middle = height / 2;
    const step = width / entry.peaks.length;
    const colours = ["--wave", "--wave-match", "--played"].map((name) => styles.getPropertyValue(name));
    const [matchLeft, matchRight] = range ? [x(range.start_seconds), x(range.end_seconds)] : [-1, -1];
    entry.peaks.forEach(([low, high], index) => {
      const left = index * step;
      context.fillStyle = left < playedX ? colours[2] : left >= matchLeft && left < matchRight ? colours[1] : colours[0];
      const top = middle - high * middle * 0.92;
      context.fillRect(left, top, Math.max(1, step - 0.5), Math.max(1, (high - low) * middle * 0.92));
    });
  }
  if (playing) {
    context.fillStyle = styles.getPropertyValue("--ink");
    context.fillRect(playedX, 0, Math.max(1, devicePixelRatio), height);
  }
}

async function showWave(card) {
  const note = $(".wave-note", card);
  note.textContent = "loading…";
  try {
    card.waveEntry = await original(card.record);
    note.textContent = card.waveEntry.peaks ? "" : "waveform not available in this browser";
    card.dataset.ready = "true";
  } catch (error) {
    note.textContent = error.reason === "CONTENT_NOT_FOUND" ? "original not kept" : `unavailable (${error.reason || error})`;
    for (const button of card.querySelectorAll(".play, .play-part")) button.disabled = true;
  }
  drawWave(card);
}

const lazyWaves = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (entry.isIntersecting) {
      lazyWaves.unobserve(entry.target);
      showWave(entry.target);
    }
  }
}, { rootMargin: "200px" });
const resizes = new ResizeObserver((entries) => entries.forEach((entry) => drawWave(entry.target.closest(".card"))));

// --- cards --------------------------------------------------------------------------------------------------------

// What made a search result a match, as the card says it.
const DECIDED_BY = {
  MATCH_EVIDENCE_EMBEDDING: "match by its sound (embedding)",
  MATCH_EVIDENCE_LANDMARKS: "match by its landmarks",
  MATCH_EVIDENCE_BOTH: "match by its sound and its landmarks",
};

function card(record, match = null, rank = 0) {
  const item = $("#card-template").content.firstElementChild.cloneNode(true);
  item.record = record;
  item.dataset.id = record.id;
  item.matchRange = match ? match.reference_range : null;
  $(".rank", item).textContent = rank ? String(rank) : "";
  $(".name", item).textContent = record.name;
  const facts = [clock(record.duration_seconds), record.codec];
  if (match) {
    facts.push(`matched ${clock(match.reference_range.start_seconds)}–${clock(match.reference_range.end_seconds)}`);
    $(".score", item).textContent = match.score.toFixed(3);
    $(".score", item).title = `score (${match.matched_segments} segments agree, ${match.landmarks} landmarks line up, ` +
      `a share of ${match.landmark_share.toFixed(3)})`;
    const decided = DECIDED_BY[match.decided_by];
    if (decided) facts.push(decided);
  }
  $(".facts", item).textContent = facts.join(" · ");
  const chips = $(".chips", item);
  if (state.untrained && record.tags.length) {
    const label = Object.assign(document.createElement("span"), { className: "chips-label" });
    label.textContent = "untrained tags:";
    chips.append(label);
  }
  for (const tag of record.tags) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip tag";
    chip.title = `Show recordings tagged ${tag.label}`;
    if (state.untrained) {
      // No percentage: "51%" from a random init reads like a classification.
      chip.classList.add("untrained");
      chip.title = `Tag of an untrained model, not a classification. ${chip.title}`;
      chip.append(tag.label);
    } else {
      const percent = Object.assign(document.createElement("b"), { textContent: `${Math.round(tag.score * 100)}%` });
      chip.append(tag.label, percent);
    }
    chip.addEventListener("click", () => filterBy({ tag: tag.label }));
    chips.append(chip);
  }
  for (const [key, value] of Object.entries(record.metadata || {})) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip meta";
    chip.textContent = `${key}=${value}`;
    chip.title = `Show recordings with ${key}=${value}`;
    chip.addEventListener("click", () => filterBy({ meta: `${key}=${value}` }));
    chips.append(chip);
  }
  const part = $(".play-part", item);
  if (!match) part.remove();
  $(".play", item).addEventListener("click", (event) => toggle(item, event.currentTarget, null));
  if (match) part.addEventListener("click", (event) => toggle(item, event.currentTarget, match.reference_range));
  $(".delete", item).addEventListener("click", () => confirmDelete(record));
  $(".wave", item).addEventListener("click", (event) => seek(item, event));
  resizes.observe($(".wave", item));
  return item;
}

// --- playback -----------------------------------------------------------------------------------------------------

function resetButtons() {
  for (const button of document.querySelectorAll(".play, .play-part, .play-clip")) {
    button.classList.remove("on");
    button.textContent = button.dataset.label || (button.classList.contains("play") ? "Play" : "Play matched part");
  }
}

async function toggle(item, button, range) {
  const player = $("#player");
  if (state.active && state.active.button === button && !player.paused) {
    player.pause();
    return;
  }
  let entry;
  try {
    entry = await original(item.record);
  } catch (error) {
    toast(`Cannot play: ${describe(error)}`, true);
    return;
  }
  const previous = state.active;
  if (player.dataset.id !== item.record.id) {
    player.src = entry.url;
    player.dataset.id = item.record.id;
  }
  state.active = { id: item.record.id, button, card: item, stopAt: range ? range.end_seconds : null };
  if (range) player.currentTime = range.start_seconds;
  else if (!previous || previous.button !== button || player.ended) player.currentTime = 0;
  resetButtons();
  button.classList.add("on");
  button.textContent = "Pause";
  try {
    await player.play();
  } catch (error) {
    resetButtons();
    toast(`Cannot play: ${error.message}`, true);
  }
  if (previous?.card && previous.card !== item) drawWave(previous.card);
}

function seek(item, event) {
  const entry = item.waveEntry;
  if (!entry) return;
  const bounds = event.currentTarget.getBoundingClientRect();
  const seconds = ((event.clientX - bounds.left) / bounds.width) * entry.duration;
  toggle(item, $(".play", item), null).then(() => { $("#player").currentTime = seconds; });
}

function watchPlayer() {
  const player = $("#player");
  const frame = () => {
    if (state.active) {
      if (state.active.stopAt !== null && player.currentTime >= state.active.stopAt) player.pause();
      if (state.active.card) drawWave(state.active.card);
    }
    if (!player.paused) requestAnimationFrame(frame);
  };
  player.addEventListener("play", () => requestAnimationFrame(frame));
  player.addEventListener("pause", () => { resetButtons(); if (state.active?.card) drawWave(state.active.card); });
  player.addEventListener("ended", () => { resetButtons(); if (state.active?.card) drawWave(state.active.card); });
}

// --- search -------------------------------------------------------------------------------------------------------

async function search(blob, name) {
  const info = $("#query");
  const results = $("#results");
  if (!state.collection) {
    info.textContent = "Create or pick a collection first.";
    return;
  }
  info.textContent = `Searching ${state.collection} for ${name}…`;
  results.replaceChildren();
  const form = new FormData();
  form.append("clip", blob, name);
  const query = {
    top_k: $("#top-k").value || "",
    min_score: $("#min-score").value,
    tag: $("#search-tag").value.trim(),
    meta: metaPairs($("#search-meta").value),
  };
  try {
    const result = await api("POST", collectionPath("/search"), { query, body: form });
    if (result.model) showModel(result.model);
    const tags = result.query_tags.slice(0, 3).map((tag) => tag.label).join(", ");
    const tagged = state.untrained ? "untrained tags (not classifications):" : "sounds like";
    info.textContent = `${name}: ${clock(result.query_duration_seconds)}${tags ? ` · ${tagged} ${tags}` : ""} · `
      + (result.matches.length ? `${result.matches.length} match${result.matches.length > 1 ? "es" : ""}`
        : "no match") + ` above ${result.score_threshold.toFixed(2)}`;
    result.matches.forEach((match, index) => {
      const item = card(match.audio, match, index + 1);
      if (index === 0) item.classList.add("top");
      results.append(item);
      showWave(item);
    });
  } catch (error) {
    info.textContent = `Search failed: ${describe(error)}`;
  }
}

function useFile(file) {
  if (file) search(file, file.name);
}

async function toggleRecording() {
  const button = $("#record");
  const status = $("#record-status");
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    status.textContent = "Recording needs a secure page (https or localhost) and a browser with MediaRecorder.";
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    status.textContent = `No microphone: ${error.message}`;
    return;
  }
  const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/ogg"]
    .find((candidate) => MediaRecorder.isTypeSupported(candidate)) || "";
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = Date.now();
  const ticker = setInterval(() => {
    const seconds = (Date.now() - started) / 1000;
    status.textContent = `Recording… ${seconds.toFixed(0)} s (click Stop to search)`;
    if (seconds >= 30) recorder.stop();
  }, 250);
  recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
  recorder.addEventListener("stop", () => {
    clearInterval(ticker);
    stream.getTracks().forEach((track) => track.stop());
    state.recorder = null;
    button.classList.remove("on");
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    const mime = recorder.mimeType || type || "audio/webm";
    const blob = new Blob(chunks, { type: mime });
    status.textContent = `Recorded ${((Date.now() - started) / 1000).toFixed(1)} s`;
    search(blob, `recording.${mime.includes("ogg") ? "ogg" : "webm"}`);
  });
  recorder.start(250);
  state.recorder = recorder;
  button.classList.add("on");
  button.textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
}

// --- browse -------------------------------------------------------------------------------------------------------

function filterBy({ tag = "", meta = "" }) {
  $("#filter-tag").value = tag;
  $("#filter-meta").value = meta;
  refreshBrowse();
  $("#browse-panel").scrollIntoView({ behavior: "smooth", block: "start" });
}

async function refreshBrowse() {
  // A newer listing supersedes one still in flight (the page's first load racing a filter, say): without the
  // generation both would append to the list.
  state.browseGeneration += 1;
  state.nextToken = "";
  $("#recordings").replaceChildren();
  await Promise.all([loadPage(), loadStats()]);
}

async function loadStats() {
  const line = $("#stats");
  if (!state.collection) {
    line.textContent = "No collection yet: create one with the menu above.";
    return;
  }
  try {
    const stats = await api("GET", collectionPath("/stats"));
    const top = stats.tags.slice(0, 3).map((tag) => `${tag.label} (${tag.audio_count})`).join(", ");
    line.textContent = `${stats.audio_count} recording${stats.audio_count === 1 ? "" : "s"} · `
      + `${clock(stats.total_duration_seconds)} in all`
      + (top ? ` · ${state.untrained ? "most frequent untrained tags (not classifications):" : "mostly"} ${top}` : "");
  } catch (error) {
    line.textContent = `Stats unavailable: ${describe(error)}`;
  }
}

async function loadPage() {
  const list = $("#recordings");
  const more = $("#more");
  more.hidden = true;
  if (!state.collection) return;
  const generation = state.browseGeneration;
  try {
    const page = await api("GET", collectionPath("/audio"), {
      query: {
        page_size: PAGE_SIZE, page_token: state.nextToken,
        tag: $("#filter-tag").value.trim(), meta: metaPairs($("#filter-meta").value),
      },
    });
    if (generation !== state.browseGeneration) return;
    for (const record of page.audios) {
      const item = card(record);
      list.append(item);
      lazyWaves.observe(item);
    }
    if (!list.children.length) {
      const empty = document.createElement("li");
      empty.className = "muted empty";
      empty.textContent = "Nothing here yet.";
      list.append(empty);
    }
    state.nextToken = page.next_page_token;
    more.hidden = !state.nextToken;
  } catch (error) {
    toast(`Could not list recordings: ${describe(error)}`, true);
  }
}

async function addFiles(files) {
  const status = $("#add-status");
  let added = 0;
  let existed = 0;
  for (const [index, file] of Array.from(files).entries()) {
    status.textContent = `Adding ${index + 1} of ${files.length}: ${file.name}…`;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const result = await api("POST", collectionPath("/audio"), { body: form });
      if (result.already_existed) existed += 1;
      else added += 1;
    } catch (error) {
      toast(`${file.name}: ${describe(error)}`, true);
    }
  }
  status.textContent = `Added ${added}${existed ? `, ${existed} already there` : ""}.`;
  await refreshBrowse();
}

// --- delete -------------------------------------------------------------------------------------------------------

function confirmDelete(record) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `“${record.name}” will be removed from ${record.collection} for good.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "delete") return;
    try {
      await api("DELETE", `/v1/collections/${encodeURIComponent(record.collection)}/audio/${record.id}`);
    } catch (error) {
      toast(`Could not delete: ${describe(error)}`, true);
      return;
    }
    if (state.active && state.active.id === record.id) {
      $("#player").pause();
      state.active = null;
    }
    for (const item of document.querySelectorAll(`.card[data-id="${record.id}"]`)) item.remove();
    state.originals.delete(record.id);
    toast(`Deleted ${record.name}`);
    loadStats();
  };
  dialog.showModal();
}

// --- monitor: a file or the microphone streamed over a WebSocket; detections on a timeline as they arrive ---------

const MONITOR_CHUNK_BYTES = 64 * 1024;
const MONITOR_BUFFERED_BYTES = 1024 * 1024; // the socket's send buffer the file pump keeps under
const MIC_KEEP_SECONDS = 300; // microphone audio kept for feed excerpts
const MIC_EXCERPTS_KEPT = 20; // ended plays whose feed excerpt stays playable after it leaves the kept audio
const monitor = {
  socket: null,
  source: null, // {kind: "file", name, url, duration} or {kind: "mic", name, rate, kept, ...}
  plays: new Map(), // detection id -> {detection, row, marker}
  analysed: 0,
  finished: false,
  excerpts: [], // object URLs of ended microphone plays, oldest first
};

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function monitorStatus(text, isError = false) {
  const line = $("#monitor-status");
  line.textContent = text;
  line.classList.toggle("error", isError);
}

function monitorHeader(label, rawFormat = null) {
  const header = { feed_label: $("#monitor-label").value.trim() || label, thresholds: {}, tags: [], metadata: {} };
  const minScore = $("#monitor-min-score").value;
  if (minScore !== "") header.thresholds.score_threshold = Number(minScore);
  const tag = $("#monitor-tag").value.trim();
  if (tag) header.tags.push(tag);
  for (const pair of metaPairs($("#monitor-meta").value)) {
    const [key, ...value] = pair.split("=");
    header.metadata[key.trim()] = value.join("=");
  }
  if (rawFormat) header.raw_format = rawFormat;
  if (state.apiKey) header.api_key = state.apiKey; // a browser cannot set headers on a WebSocket
  return header;
}

function monitorUrl() {
  const url = new URL(collectionPath("/monitor"), location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

function resetMonitor(source) {
  for (const url of monitor.excerpts) URL.revokeObjectURL(url);
  if (monitor.source && monitor.source.url) URL.revokeObjectURL(monitor.source.url);
  Object.assign(monitor, { source, plays: new Map(), analysed: 0, finished: false, excerpts: [] });
  $("#monitor-detections").replaceChildren();
  $("#monitor-timeline").replaceChildren(Object.assign(document.createElement("div"), { className: "analysed" }));
  drawTimeline();
}

function monitorRunning(running) {
  $("#monitor-stop").disabled = !running;
  $("#monitor-file").disabled = running;
  const mic = $("#monitor-mic");
  mic.disabled = running && monitor.source?.kind !== "mic";
  mic.classList.toggle("on", running && monitor.source?.kind === "mic");
  mic.setAttribute("aria-pressed", String(running && monitor.source?.kind === "mic"));
  mic.textContent = running && monitor.source?.kind === "mic" ? "Stop the microphone" : "Monitor the microphone";
}

function openMonitor(source, header, feed) {
  if (!state.collection) {
    monitorStatus("Create or pick a collection first.", true);
    return null;
  }
  resetMonitor(source);
  monitorStatus(`Monitoring ${source.name} for the recordings of ${state.collection}…`);
  const socket = new WebSocket(monitorUrl());
  socket.binaryType = "arraybuffer";
  monitor.socket = socket;
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify(header));
    feed(socket);
  });
  socket.addEventListener("message", (event) => onMonitorEvent(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => onMonitorClosed(socket, event));
  monitorRunning(true);
  return socket;
}

function endFeed(socket) {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ end: true }));
}

// A file: its bytes as they are, in chunks paced by what the socket still has to send.
function monitorFile(file) {
  if (!file) return;
  const source = { kind: "file", name: file.name, url: URL.createObjectURL(file), duration: 0 };
  const probe = new Audio();
  probe.preload = "metadata";
  probe.addEventListener("loadedmetadata", () => {
    if (Number.isFinite(probe.duration)) source.duration = probe.duration;
    drawTimeline();
  });
  probe.src = source.url;
  openMonitor(source, monitorHeader(file.name), async (socket) => {
    for (let offset = 0; offset < file.size; offset += MONITOR_CHUNK_BYTES) {
      while (socket.readyState === WebSocket.OPEN && socket.bufferedAmount > MONITOR_BUFFERED_BYTES) await sleep(20);
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(await file.slice(offset, offset + MONITOR_CHUNK_BYTES).arrayBuffer());
    }
    endFeed(socket);
  });
}

// The microphone: mono f32le at the audio context's rate; its last MIC_KEEP_SECONDS are kept for excerpts.
async function toggleMonitorMic() {
  if (monitor.source?.kind === "mic" && monitor.socket) {
    stopMic(monitor.source);
    endFeed(monitor.socket);
    monitorStatus("Stopped the microphone; waiting for the last detections…");
    return;
  }
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    monitorStatus("The microphone needs a secure page (https or localhost) and a browser with AudioWorklet.", true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    monitorStatus(`No microphone: ${error.message}`, true);
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/monitor-worklet.js");
  const input = context.createMediaStreamSource(stream);
  const tap = new AudioWorkletNode(context, "feed-tap");
  const mute = context.createGain();
  mute.gain.value = 0; // the tap must reach the destination to be pulled; nothing is heard
  const source = { kind: "mic", name: "microphone", rate: context.sampleRate, context, stream, kept: [], keptStart: 0,
    frames: 0, url: null };
  const header = monitorHeader("microphone", { sample_rate_hz: context.sampleRate, channels: 1,
    sample_format: "f32le" });
  openMonitor(source, header, (socket) => {
    tap.port.onmessage = (event) => {
      if (socket.readyState !== WebSocket.OPEN || source.stopped) return;
      socket.send(event.data.buffer);
      keepMic(source, event.data);
    };
    input.connect(tap).connect(mute).connect(context.destination);
  });
}

function keepMic(source, block) {
  const samples = new Int16Array(block.length);
  for (let i = 0; i < block.length; i += 1) samples[i] = Math.max(-1, Math.min(1, block[i])) * 32767;
  source.kept.push(samples);
  source.frames += block.length;
  while (source.frames - source.keptStart - source.kept[0].length >= MIC_KEEP_SECONDS * source.rate) {
    source.keptStart += source.kept.shift().length;
  }
}

function stopMic(source) {
  if (source.stopped) return;
  source.stopped = true;
  source.stream.getTracks().forEach((track) => track.stop());
  source.context.close();
}

function micExcerpt(source, start, end) {
  const first = Math.max(Math.round(start * source.rate), source.keptStart);
  const last = Math.min(Math.round(end * source.rate), source.frames);
  if (last <= first) return null;
  const samples = new Int16Array(last - first);
  let position = source.keptStart;
  for (const block of source.kept) {
    const from = Math.max(first, position);
    const to = Math.min(last, position + block.length);
    if (from < to) samples.set(block.subarray(from - position, to - position), from - first);
    position += block.length;
  }
  return { url: URL.createObjectURL(wavBlob(samples, source.rate)), offset: first / source.rate };
}

function wavBlob(samples, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, value) => [...value].forEach((char, i) => header.setUint8(at + i, char.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + samples.byteLength, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true);
  header.setUint16(22, 1, true);
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, samples.byteLength, true);
  return new Blob([header, samples], { type: "audio/wav" });
}

function stopMonitor() {
  const socket = monitor.socket;
  if (!socket) return;
  if (monitor.source?.kind === "mic") stopMic(monitor.source);
  monitorStatus(`Stopped ${monitor.source.name} after ${clock(monitor.analysed)} analysed.`);
  monitor.finished = true;
  socket.close(1000, "stopped"); // cancels the monitor on the server
}

function onMonitorClosed(socket, event) {
  if (monitor.socket !== socket) return;
  monitor.socket = null;
  if (monitor.source?.kind === "mic") stopMic(monitor.source);
  monitorRunning(false);
  if (!monitor.finished) monitorStatus(`The connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""}).`, true);
}

function onMonitorEvent(event) {
  if (event.detection) showDetection(event.detection);
  if (event.progress) {
    const progress = event.progress;
    monitor.analysed = progress.audio_seconds;
    monitorStatus(`${monitor.source.name}: ${clock(progress.audio_seconds)} analysed · `
      + `${progress.real_time_factor.toFixed(1)}× real time · lag ${clock(progress.lag_seconds)} · `
      + `${progress.open_detections} playing`);
    drawTimeline();
  }
  if (event.end) {
    monitor.finished = true;
    monitor.analysed = Math.max(monitor.analysed, event.end.audio_seconds);
    const count = event.end.detections;
    monitorStatus(`${monitor.source.name}: finished, ${count} play${count === 1 ? "" : "s"} detected in `
      + `${clock(event.end.audio_seconds)}.`);
    drawTimeline();
  }
  if (event.error) {
    monitor.finished = true;
    monitorStatus(`Monitor failed: ${event.error.reason}: ${event.error.message}`, true);
  }
}

function timelineLength() {
  let length = Math.max(monitor.analysed, monitor.source?.duration || 0);
  for (const play of monitor.plays.values()) length = Math.max(length, play.detection.feed_range.end_seconds);
  return length || 1;
}

function drawTimeline() {
  const length = timelineLength();
  const percent = (seconds) => `${Math.min(100, (100 * seconds) / length)}%`;
  $("#monitor-timeline .analysed").style.width = percent(monitor.analysed);
  for (const { detection, marker } of monitor.plays.values()) {
    const { start_seconds: start, end_seconds: end } = detection.feed_range;
    const shownEnd = detection.state === "ENDED" ? end : Math.max(end, monitor.analysed);
    marker.style.left = percent(start);
    marker.style.width = percent(Math.max(0, shownEnd - start));
  }
  $("#monitor-length").textContent = monitor.source ? clock(length) : "";
}

function showDetection(detection) {
  let play = monitor.plays.get(detection.detection_id);
  if (!play) {
    const row = $("#detection-template").content.firstElementChild.cloneNode(true);
    const marker = Object.assign(document.createElement("button"), { type: "button", className: "marker" });
    row.dataset.detectionId = marker.dataset.detectionId = detection.detection_id;
    marker.addEventListener("click", () => selectPlay(detection.detection_id));
    $(".play-recording", row).addEventListener("click", (event) => playRecording(event.currentTarget, play));
    $(".play-feed", row).addEventListener("click", (event) => playFeed(event.currentTarget, play));
    play = { row, marker };
    monitor.plays.set(detection.detection_id, play);
    $("#monitor-detections").prepend(row);
    $("#monitor-timeline").append(marker);
  }
  play.detection = detection;
  const { row, marker } = play;
  const feed = detection.feed_range;
  const reference = detection.reference_range;
  row.dataset.state = detection.state;
  row.dataset.audioId = detection.audio.id;
  $(".state", row).textContent = detection.state === "ENDED" ? "ended" : "playing";
  $(".name", row).textContent = detection.audio.name;
  $(".score", row).textContent = detection.score.toFixed(3);
  $(".facts", row).textContent = [
    `feed ${clock(feed.start_seconds)}–${clock(feed.end_seconds)}`,
    `recording ${clock(reference.start_seconds)}–${clock(reference.end_seconds)}`,
    `${detection.landmarks} landmarks`,
    DECIDED_BY[detection.decided_by] || "",
  ].filter(Boolean).join(" · ");
  Object.assign($(".play-recording", row).dataset, { src: detection.audio.content_url,
    start: reference.start_seconds, end: reference.end_seconds });
  Object.assign($(".play-feed", row).dataset, { src: monitor.source.kind === "file" ? monitor.source.url : "microphone",
    start: feed.start_seconds, end: feed.end_seconds });
  marker.classList.toggle("started", detection.state !== "ENDED");
  marker.title = `${detection.audio.name}: feed ${clock(feed.start_seconds)}–${clock(feed.end_seconds)}`;
  if (detection.state === "ENDED" && monitor.source.kind === "mic") keepExcerpt(play);
  drawTimeline();
}

// An ended microphone play keeps its excerpt (the most recent MIC_EXCERPTS_KEPT of them), so it stays playable
// after the kept audio has moved on.
function keepExcerpt(play) {
  const { start_seconds: start, end_seconds: end } = play.detection.feed_range;
  play.excerpt = micExcerpt(monitor.source, start, end);
  if (!play.excerpt) return;
  monitor.excerpts.push(play.excerpt.url);
  while (monitor.excerpts.length > MIC_EXCERPTS_KEPT) {
    const old = monitor.excerpts.shift();
    URL.revokeObjectURL(old);
    for (const other of monitor.plays.values()) {
      if (other.excerpt && other.excerpt.url === old) {
        other.excerpt = null;
        $(".play-feed", other.row).disabled = true;
        $(".play-feed", other.row).title = "no longer kept in this browser";
      }
    }
  }
}

function selectPlay(detectionId) {
  for (const [id, play] of monitor.plays) {
    play.row.classList.toggle("selected", id === detectionId);
    play.marker.classList.toggle("selected", id === detectionId);
  }
  monitor.plays.get(detectionId)?.row.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function playRecording(button, play) {
  selectPlay(play.detection.detection_id);
  try {
    const entry = await original(play.detection.audio);
    const range = play.detection.reference_range;
    await playClip(button, play.detection.audio.id, entry.url, range.start_seconds, range.end_seconds);
  } catch (error) {
    toast(`Cannot play: ${describe(error)}`, true);
  }
}

async function playFeed(button, play) {
  selectPlay(play.detection.detection_id);
  const { start_seconds: start, end_seconds: end } = play.detection.feed_range;
  const source = monitor.source;
  if (source.kind === "file") {
    await playClip(button, `feed:${source.url}`, source.url, start, end);
    return;
  }
  const excerpt = play.excerpt || micExcerpt(source, start, Math.max(end, monitor.analysed));
  if (!excerpt) {
    toast("That part of the microphone's audio is no longer kept in this browser.", true);
    return;
  }
  if (!play.excerpt) setTimeout(() => URL.revokeObjectURL(excerpt.url), 10 * 60 * 1000);
  await playClip(button, `feed:${excerpt.url}`, excerpt.url, start - excerpt.offset, end - excerpt.offset);
}

async function playClip(button, id, url, start, end) {
  const player = $("#player");
  if (state.active && state.active.button === button && !player.paused) {
    player.pause();
    return;
  }
  if (player.dataset.id !== id) {
    player.src = url;
    player.dataset.id = id;
  }
  const previous = state.active;
  state.active = { id, button, card: null, stopAt: end };
  if (previous?.card) drawWave(previous.card);
  player.currentTime = start;
  resetButtons();
  button.classList.add("on");
  button.textContent = "Pause";
  try {
    await player.play();
  } catch (error) {
    resetButtons();
    toast(`Cannot play: ${error.message}`, true);
  }
}

// --- wiring -------------------------------------------------------------------------------------------------------

function wire() {
  $("#collection").addEventListener("change", onCollectionChange);
  $("#clip").addEventListener("change", (event) => { useFile(event.target.files[0]); event.target.value = ""; });
  $("#record").addEventListener("click", toggleRecording);
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); refreshBrowse(); });
  $("#filter-clear").addEventListener("click", () => filterBy({}));
  $("#more").addEventListener("click", loadPage);
  $("#add-files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  $("#settings-button").addEventListener("click", () => {
    $("#api-key").value = state.apiKey;
    $("#settings").showModal();
  });
  $("#settings").addEventListener("close", () => {
    if ($("#settings").returnValue !== "save") return;
    state.apiKey = $("#api-key").value.trim();
    localStorage.setItem("audiosearch.apiKey", state.apiKey);
    state.originals.clear();
    loadCollections();
  });
  $("#monitor-file").addEventListener("change", (event) => { monitorFile(event.target.files[0]); event.target.value = ""; });
  $("#monitor-mic").addEventListener("click", toggleMonitorMic);
  $("#monitor-stop").addEventListener("click", stopMonitor);
  watchPlayer();
}

wire();
loadCollections();
