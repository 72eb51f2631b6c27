// HydraNet kiosk front end: /api/info builds the panels, /events (SSE) feeds them,
// /stream.mjpg is the video. Plain ES2020, no dependencies, served from the binary.
'use strict';

const $ = (id) => document.getElementById(id);
const video = $('video');

// Optional ?token=... is forwarded to every server URL (an <img> cannot send headers).
const TOKEN = new URLSearchParams(location.search).get('token');
function url(path, extra = {}) {
  const u = new URL(path, location.origin);
  if (TOKEN) u.searchParams.set('token', TOKEN);
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
  return u.pathname + u.search;
}

const INFO_RETRY_MS = 2000;
const STREAM_RETRY_MS = 1000;
const STALE_MS = 6000; // status comes ~1/s; silence this long means a dead connection

let heads = [];        // from /api/info
let headsKey = '';     // JSON of heads, to notice a model change after a server restart
let views = {};        // head name -> DOM nodes to update
let es = null;
let connected = false;
let hadError = false;
let lastEventAt = 0;
let sourceOk = true;
let lastError = '';
let latencyEma = null;

// ---------- state: live / camera-lost / disconnected ----------

function applyState() {
  const state = !connected ? 'disconnected' : sourceOk ? 'live' : 'camera-lost';
  document.body.dataset.state = state;
  $('connection').hidden = connected;
  $('camera-lost').hidden = state !== 'camera-lost';
  $('camera-error').textContent = lastError;
}

// ---------- video: an MJPEG <img> never reconnects by itself ----------

let streamTimer = 0;
function reloadStream() {
  clearTimeout(streamTimer);
  video.src = url('/stream.mjpg', { t: Date.now() }); // cache-bust: force a new request
}
video.addEventListener('error', () => {
  clearTimeout(streamTimer);
  streamTimer = setTimeout(reloadStream, STREAM_RETRY_MS);
});
// The HTML src may have failed before this script ran, or lack the token.
if (TOKEN || (video.complete && video.naturalWidth === 0)) reloadStream();

// ---------- panels, built from the model's heads ----------

// Head names come from the model file: keep ids to safe characters.
const idOf = (name) => String(name).toLowerCase().replace(/[^a-z0-9_-]+/g, '-');

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function buildPanels(info) {
  heads = Array.isArray(info.heads) ? info.heads : [];
  headsKey = JSON.stringify(heads);
  views = {};
  const root = $('heads');
  root.replaceChildren();
  for (const h of heads) {
    const id = idOf(h.name);
    const sec = el('section', 'head');
    sec.dataset.head = h.name;
    sec.dataset.kind = h.kind;
    sec.append(el('h2', null, h.name));
    if (Array.isArray(h.labels) && h.labels.length) {
      // binary / multiclass: winner label, then one bar per class
      const label = el('div', 'class-label', '–');
      label.id = id + '-label';
      sec.append(label);
      const bars = h.labels.map((name, i) => {
        const row = el('div', 'bar');
        row.dataset.index = i;
        const fill = el('div', 'fill');
        const track = el('div', 'track');
        track.append(fill);
        const pct = el('span', 'pct', '–');
        row.append(el('span', 'name', name), track, pct);
        sec.append(row);
        return { row, fill, pct };
      });
      views[h.name] = { kind: 'class', label, bars };
    } else {
      // regression (or anything unknown with a value): one big number
      const wrap = el('div', 'reg');
      const value = el('span', 'value', '–');
      value.id = id;
      const spread = el('span', 'spread');
      spread.id = id + '-spread';
      wrap.append(value, el('span', 'unit', h.unit || ''), spread);
      sec.append(wrap);
      views[h.name] = { kind: 'reg', value, spread };
    }
    root.append(sec);
  }
}

function showModel(info) {
  const m = info.model || {};
  $('model').textContent = [m.name, m.version].filter(Boolean).join(' ');
  if (info.source && !$('source').textContent) $('source').textContent = info.source;
}

function renderHead(view, s) {
  if (view.kind === 'reg') {
    const ok = s && Number.isFinite(s.value);
    view.value.textContent = ok ? String(Math.round(s.value)) : '–';
    view.spread.textContent = ok && Number.isFinite(s.spread) ? `± ${s.spread.toFixed(1)}` : '';
    return;
  }
  const probs = (s && Array.isArray(s.probs)) ? s.probs : [];
  view.label.textContent = s && s.label != null ? String(s.label) : '–';
  view.bars.forEach((b, i) => {
    const p = Number.isFinite(probs[i]) ? Math.min(1, Math.max(0, probs[i])) : 0;
    b.fill.style.transform = `scaleX(${p})`;
    b.pct.textContent = i < probs.length ? `${Math.round(p * 100)}%` : '–';
    b.row.classList.toggle('win', s != null && i === s.index);
  });
}

// ---------- rendering: at most once per animation frame ----------

let pendingPrediction = null;
let pendingStatus = null;
let rafQueued = false;

function schedule() {
  if (!rafQueued) {
    rafQueued = true;
    requestAnimationFrame(render);
  }
}

// ---------- faces (with a detector): a tag per face over the video ----------

// One short line per face: its track and each head's smoothed answer.
function faceText(f) {
  const parts = [`#${f.track}`];
  const vals = f.smoothed || {};
  for (const h of heads) {
    const s = vals[h.name];
    if (!s) continue;
    if (Number.isFinite(s.value)) parts.push(`${Math.round(s.value)}${h.unit === 'years' ? ' y' : ''}`);
    else if (s.label != null) parts.push(String(s.label));
  }
  return parts.join(' · ');
}

// Where the frame is drawn inside the <img> (object-fit: contain).
function frameRect(size) {
  const [fw, fh] = size;
  const bw = video.clientWidth;
  const bh = video.clientHeight;
  if (!(fw > 0 && fh > 0 && bw > 0 && bh > 0)) return null;
  const k = Math.min(bw / fw, bh / fh);
  return { k, x: video.offsetLeft + (bw - fw * k) / 2, y: video.offsetTop + (bh - fh * k) / 2 };
}

function renderFaces(p) {
  const root = $('faces');
  const faces = Array.isArray(p.faces) ? p.faces : [];
  const r = Array.isArray(p.size) ? frameRect(p.size) : null;
  while (root.children.length > faces.length) root.lastChild.remove();
  faces.forEach((f, i) => {
    let tag = root.children[i];
    if (!tag) {
      tag = el('div', 'face-tag');
      root.append(tag);
    }
    tag.textContent = faceText(f);
    tag.dataset.track = String(f.track);
    tag.dataset.steady = String(f.steady === true);
    const b = Array.isArray(f.box) ? f.box : null;
    if (r && b) {
      tag.style.left = `${r.x + b[0] * r.k}px`;
      tag.style.top = `${r.y + b[1] * r.k}px`;
      tag.hidden = false;
    } else {
      tag.hidden = true;
    }
  });
  const over = Number(p.over_cap) > 0 ? ` (+${p.over_cap} more)` : '';
  $('caption').textContent = faces.length === 0 ? 'No face'
    : faces.length === 1 ? `1 face${over}` : `${faces.length} faces${over}`;
  document.body.dataset.faces = String(faces.length);
  return faces[0] || null;
}

function render() {
  rafQueued = false;
  const p = pendingPrediction;
  pendingPrediction = null;
  if (p) {
    // With a detector the panel follows the best face; without, the guide box.
    const detecting = Array.isArray(p.faces);
    const face = detecting ? renderFaces(p) : p;
    const vals = face ? (face.smoothed || face.raw || {}) : {};
    for (const h of heads) renderHead(views[h.name], vals[h.name]);
    const steady = face !== null && face.steady === true;
    $('steady').dataset.steady = String(steady);
    $('steady').textContent = face === null ? 'no face' : steady ? 'steady' : 'reading…';
    $('panel').dataset.steady = String(steady);
    $('frame').textContent = p.frame ?? '–';
    if (latencyEma !== null) $('latency').textContent = latencyEma.toFixed(1);
  }
  const s = pendingStatus;
  pendingStatus = null;
  if (s) {
    if (Number.isFinite(s.fps)) $('fps').textContent = s.fps.toFixed(1);
    if (Number.isFinite(s.dropped)) $('dropped').textContent = String(s.dropped);
    if (s.source) $('source').textContent = s.source;
  }
  applyState();
}

// ---------- server connection ----------

function parse(e) {
  lastEventAt = Date.now();
  try {
    return JSON.parse(e.data);
  } catch (err) {
    console.warn('bad event data', e.type, err);
    return null;
  }
}

function onPrediction(e) {
  const p = parse(e);
  if (!p) return;
  // Smooth the latency readout; at 30-100 Hz the raw number is unreadable.
  // With a detector a frame's network time is the detector's plus the HydraNet batch's.
  const ms = p.ms && p.ms.inference + (Number.isFinite(p.ms.detect) ? p.ms.detect : 0);
  if (Number.isFinite(ms)) latencyEma = latencyEma === null ? ms : latencyEma * 0.9 + ms * 0.1;
  pendingPrediction = p; // only the newest one is drawn
  schedule();
}

function onStatus(e) {
  const s = parse(e);
  if (!s) return;
  const wasOk = sourceOk;
  sourceOk = s.source_ok !== false;
  lastError = s.last_error ? String(s.last_error) : '';
  // Camera back: restart the video request in case the server ended the old one.
  if (sourceOk && !wasOk) reloadStream();
  pendingStatus = s;
  schedule();
}

function setConnected(c) {
  connected = c;
  schedule();
}

function openEvents() {
  if (es) es.close();
  const src = new EventSource(url('/events'));
  es = src;
  src.addEventListener('prediction', onPrediction);
  src.addEventListener('status', onStatus);
  src.onopen = () => {
    lastEventAt = Date.now();
    setConnected(true);
    if (hadError) {
      // The server may have restarted: new video request, maybe a new model.
      hadError = false;
      reloadStream();
      loadInfo().catch(() => {});
    }
  };
  src.onerror = () => {
    if (src !== es) return; // an old, replaced connection
    hadError = true;
    setConnected(false);
    // CONNECTING: the browser retries by itself. CLOSED (e.g. 401/404/wrong
    // content type): it gives up, so start over ourselves.
    if (src.readyState === EventSource.CLOSED) restart();
  };
}

let restartTimer = 0;
function restart() {
  if (es) { es.close(); es = null; }
  hadError = true;
  setConnected(false);
  clearTimeout(restartTimer);
  restartTimer = setTimeout(start, INFO_RETRY_MS);
}

// A half-open TCP connection (Wi-Fi drop) can leave EventSource "open" forever.
setInterval(() => {
  if (es && connected && Date.now() - lastEventAt > STALE_MS) restart();
}, 1000);

async function loadInfo() {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 5000);
  try {
    const r = await fetch(url('/api/info'), { cache: 'no-store', signal: ctl.signal });
    if (!r.ok) throw new Error(`/api/info: HTTP ${r.status}`);
    const info = await r.json();
    if (JSON.stringify(Array.isArray(info.heads) ? info.heads : []) !== headsKey) buildPanels(info);
    showModel(info);
    return info;
  } finally {
    clearTimeout(t);
  }
}

async function start() {
  // Until /api/info answers we cannot build the panels: stay "disconnected".
  for (;;) {
    try {
      await loadInfo();
      break;
    } catch (err) {
      console.warn(err);
      setConnected(false);
      await new Promise((r) => setTimeout(r, INFO_RETRY_MS));
    }
  }
  openEvents();
}

applyState();
start();
