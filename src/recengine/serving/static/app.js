// The recengine web page: search movies, rate them, watch recommendations follow, ask why.
// Plain JavaScript over the REST API v1 of the server that serves this file; no build step, no
// other host. Each rating is stored on the server (the feedback store) under a per-browser user id
// kept in localStorage, so a reload (or another tab) finds the ratings again.

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const SEARCH_DELAY_MS = 250; // debounce: one request per pause in typing, not one per key
const ARROW_DELAY_MS = 400; // arrow keys step through values; only the value you stop on is saved

// ----- storage and identity -------------------------------------------------------------------
// (A browser that refuses storage still works, for this visit only.)
const memory = new Map();
function keeper(area) {
  return {
    get(k) {
      try { return window[area].getItem(k); } catch { return memory.get(k) ?? null; }
    },
    set(k, v) {
      try { window[area].setItem(k, v); } catch { memory.set(k, v); }
    },
  };
}
const storage = keeper("localStorage");
const session = keeper("sessionStorage"); // the API key: forgotten when the tab closes

function newUserId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const state = {
  user: storage.get("recengine.user") || null,
  key: session.get("recengine.apiKey") || null,
  model: null, // the shown model's info from /v1/models: the default, or ?model=NAME of the page
  pick: new URLSearchParams(location.search).get("model"), // the model the page's address names
  values: [1, 2, 3, 4, 5], // star values, from the model's rating scale
  ratings: new Map(), // String(item) -> {item, title, rating}
  recIds: new Set(),
  recRenders: 0,
};
if (!state.user) {
  state.user = newUserId();
  storage.set("recengine.user", state.user);
}

// ----- the API ----------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

// The REST routes answer for the default model unless ?model= names another; the explore routes
// name theirs in the path.
function forModel(path) {
  if (!state.pick || !path.startsWith("/v1/") || path.startsWith("/v1/models")) return path;
  return `${path}${path.includes("?") ? "&" : "?"}model=${enc(state.pick)}`;
}

async function api(path, { method = "GET", body, signal, note = true } = {}) {
  path = forModel(path);
  const headers = { Accept: "application/json" };
  if (state.key) headers["X-API-Key"] = state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", "Cannot reach the recommendation server. Is it running?");
  }
  let data = null;
  try { data = await res.json(); } catch { /* an error page that is not JSON */ }
  if (!res.ok) {
    if (res.status === 401) askForKey();
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, (data && data.error) || "http_error", detail);
  }
  if ($("error").dataset.kind === "unreachable") hideError(); // the server is back
  if (note && data && data.model && data.model.version) await noteModel(data.model);
  return data;
}

const userPath = () => `/v1/users/${enc(state.user)}`;

// ----- messages -------------------------------------------------------------------------------------
let retryAction = null;

function showError(message, retry, kind = "error") {
  $("error-text").textContent = message;
  $("error").dataset.kind = kind;
  $("error").hidden = false;
  retryAction = retry || null;
  $("error-retry").hidden = !retry;
}

function hideError() {
  $("error").hidden = true;
  $("error").dataset.kind = "";
  retryAction = null;
}

function reportError(what, e, retry) {
  if (e && e.name === "AbortError") return;
  const kind = e instanceof ApiError && e.code === "unreachable" ? "unreachable" : "error";
  showError(`${what}: ${e.message}`, retry, kind);
}

function setStatus(id, text) {
  $(id).textContent = text;
}

function askForKey() {
  $("key-form").hidden = false;
}

// ----- the model --------------------------------------------------------------------------------
// A reload may swap in another kind of model (a probability for a rating, other stars): an answer
// naming a new version reads the model's info again before the caller renders with it.
let modelRefresh = null;

async function noteModel(ref) {
  const m = state.model;
  if (!m || m.model.name !== ref.name) return;
  if (m.model.version !== ref.version) {
    m.model = ref; // at once: answers meanwhile wait for this refresh instead of starting another
    modelRefresh = refreshModelInfo(ref.name).finally(() => { modelRefresh = null; });
  }
  if (modelRefresh) await modelRefresh;
}

async function refreshModelInfo(name) {
  try {
    state.model = await api(`/v1/models/${enc(name)}`, { note: false }); // not noted: it awaits this
    const before = state.values.join();
    applyScale();
    if (state.values.join() !== before) loadRatings().catch(() => {}); // stars of the new scale
  } catch { /* unreadable now: the page keeps the old kind and stars under the new version */ }
  showModel(true);
  if (ex.started) loadExplore(); // the map and clusters of the new version
}

function applyScale() {
  const scale = state.model.rating_scale;
  if (scale) {
    const lo = Math.max(1, Math.ceil(scale.low));
    const hi = Math.max(lo, Math.min(lo + 9, Math.floor(scale.high)));
    state.values = Array.from({ length: hi - lo + 1 }, (_, n) => lo + n);
  }
}

function showModel(reloaded = false) {
  const m = state.model;
  const parts = [`Model ${m.model.name}`, m.algorithm];
  if (m.dataset) parts.push(`trained on ${m.dataset}`);
  parts.push(`version ${m.model.version}`);
  $("model").textContent = parts.join(" · ") + (reloaded ? " (just reloaded)" : "");
  $("model").dataset.version = m.model.version;
  $("foot-model").textContent = `${m.n_items.toLocaleString()} movies, ${m.n_users.toLocaleString()} users`;
}

async function loadModel() {
  const list = await api("/v1/models");
  const named = state.pick && list.models.find((m) => m.model.name === state.pick);
  if (state.pick && !named) {
    showError(`No model named ${state.pick} is served here; showing the default one.`);
    state.pick = null;
  }
  state.model = named || list.models.find((m) => m.default) || list.models[0];
  const pick = $("model-pick");
  pick.replaceChildren(...list.models.map((m) => el("option", { value: m.model.name }, m.model.name)));
  pick.value = state.model.model.name;
  $("model-pick-wrap").hidden = list.models.length < 2;
  applyScale();
  showModel();
}

// ----- small DOM helpers --------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function titleOf(it) {
  const t = it.title || `Item ${it.item}`;
  return it.year ? `${t} (${it.year})` : t;
}

function fmt(x, digits = 1) {
  return Number(x).toFixed(digits);
}

// ----- stars ----------------------------------------------------------------------------------------
// A radio group (WAI-ARIA "rating" pattern): one tab stop per movie; arrow keys step the value,
// Home/End jump, number keys and Enter/Space set it; a click sets it; every set value is saved.

function starWidget(item, title) {
  const group = el("div", { class: "stars", role: "radiogroup", "aria-label": `Your rating of ${title}` });
  group.dataset.item = String(item);
  for (const v of state.values) {
    group.append(el("button", {
      type: "button", role: "radio", class: "star", "aria-checked": "false",
      "aria-label": `${v} star${v === 1 ? "" : "s"}`, "data-value": v, tabindex: "-1",
    }, "★"));
  }
  paintStars(group, currentRating(item));
  group.addEventListener("click", (e) => {
    const star = e.target.closest(".star");
    if (star) setRating(item, title, Number(star.dataset.value), 0, star);
  });
  group.addEventListener("keydown", (e) => onStarKey(e, group, item, title));
  group.addEventListener("mouseover", (e) => {
    const star = e.target.closest(".star");
    if (star) previewStars(group, Number(star.dataset.value));
  });
  group.addEventListener("mouseleave", () => previewStars(group, null));
  return group;
}

function currentRating(item) {
  const r = state.ratings.get(String(item));
  return r ? r.rating : null;
}

function paintStars(group, value) {
  const stars = group.querySelectorAll(".star");
  let focusable = null;
  stars.forEach((s) => {
    const v = Number(s.dataset.value);
    s.classList.toggle("on", value !== null && v <= value);
    s.setAttribute("aria-checked", String(v === value));
    if (v === value) focusable = s;
  });
  focusable = focusable || stars[0];
  stars.forEach((s) => s.setAttribute("tabindex", s === focusable ? "0" : "-1"));
  group.dataset.value = value === null ? "" : String(value);
}

function previewStars(group, value) {
  group.querySelectorAll(".star").forEach((s) => {
    s.classList.toggle("preview", value !== null && Number(s.dataset.value) <= value);
  });
}

function onStarKey(e, group, item, title) {
  const vals = state.values;
  const lo = vals[0];
  const hi = vals[vals.length - 1];
  const now = group.dataset.value === "" ? null : Number(group.dataset.value);
  let value = null;
  let delay = 0;
  if (e.key === "ArrowRight" || e.key === "ArrowUp") {
    value = now === null ? lo : Math.min(hi, now + 1);
    delay = ARROW_DELAY_MS;
  } else if (e.key === "ArrowLeft" || e.key === "ArrowDown") {
    value = now === null ? lo : Math.max(lo, now - 1);
    delay = ARROW_DELAY_MS;
  } else if (e.key === "Home") {
    value = lo;
    delay = ARROW_DELAY_MS;
  } else if (e.key === "End") {
    value = hi;
    delay = ARROW_DELAY_MS;
  } else if (/^[0-9]$/.test(e.key) && vals.includes(Number(e.key))) {
    value = Number(e.key);
  } else if (e.key === "Enter" || e.key === " ") {
    const star = e.target.closest(".star");
    if (star) value = Number(star.dataset.value);
  }
  if (value === null) return;
  e.preventDefault();
  setRating(item, title, value, delay, group.querySelector(`.star[data-value="${value}"]`));
}

function syncStars(item) {
  const key = String(item);
  const value = currentRating(key);
  document.querySelectorAll(".stars").forEach((g) => {
    if (g.dataset.item === key) paintStars(g, value);
  });
}

// ----- rating -------------------------------------------------------------------------------------
const saveTimers = new Map();

function setRating(item, title, value, delay, focusStar) {
  const key = String(item);
  const before = state.ratings.get(key);
  state.ratings.set(key, { item, title, rating: value });
  syncStars(key);
  if (focusStar) focusStar.focus();
  clearTimeout(saveTimers.get(key));
  saveTimers.set(key, setTimeout(() => saveRating(item, title, value, before), delay));
}

async function saveRating(item, title, value, before) {
  const key = String(item);
  saveTimers.delete(key);
  setStatus("mine-status", `Saving your rating of ${title}…`);
  try {
    const res = await api(`${userPath()}/ratings`, { method: "POST", body: { ratings: [{ item, rating: value }] } });
    applyRatings(res.ratings);
    setStatus("mine-status", `Saved: ${title}, ${value} star${value === 1 ? "" : "s"}. ${ratedCount()}`);
    await refreshRecs();
  } catch (e) {
    if (before) state.ratings.set(key, before);
    else state.ratings.delete(key);
    syncStars(key);
    setStatus("mine-status", ratedCount());
    reportError(`Your rating of ${title} was not saved`, e, () => saveRating(item, title, value, before));
  }
}

function ratedCount() {
  const n = state.ratings.size;
  return n ? `${n} movie${n === 1 ? "" : "s"} rated.` : "None yet.";
}

function applyRatings(rows) {
  const pending = new Map([...state.ratings].filter(([k]) => saveTimers.has(k)));
  state.ratings = new Map(rows.map((r) => [String(r.item), { item: r.item, title: r.title, rating: r.rating }]));
  for (const [k, v] of pending) state.ratings.set(k, v); // a value still waiting to be saved wins
  renderMine(rows);
  document.querySelectorAll(".stars").forEach((g) => paintStars(g, currentRating(g.dataset.item)));
}

async function loadRatings() {
  const res = await api(`${userPath()}/ratings`);
  applyRatings(res.ratings);
  setStatus("mine-status", ratedCount());
}

function renderMine(rows) {
  const list = $("mine");
  keepFocus(list, () => list.replaceChildren(...rows.slice().reverse().map((r) => itemRow({ item: r.item, title: r.title }))));
}

// Re-rendering a list must not throw a keyboard user's focus back to the top of the page: focus
// goes back to the same movie (its stars, if they had it), else to the row now in its place.
function keepFocus(list, render) {
  const active = document.activeElement;
  const row = active && list.contains(active) ? active.closest("li.item") : null;
  const index = row ? [...list.children].indexOf(row) : -1;
  const onStars = Boolean(row && active.closest(".stars"));
  render();
  if (!row) return;
  const rows = [...list.children];
  const same = rows.find((r) => r.dataset.item === row.dataset.item);
  const target = same || rows[Math.min(index, rows.length - 1)];
  if (!target) {
    $("search-input").focus();
    return;
  }
  const focusable = same && onStars ? target.querySelector('.star[tabindex="0"]') : target.querySelector(".title");
  if (focusable) focusable.focus();
}

// ----- lists of movies --------------------------------------------------------------------------
function itemRow(it, { score, why = false, fresh = false } = {}) {
  const title = titleOf(it);
  const meta = [];
  if (it.genres && it.genres.length) meta.push(it.genres.join(", "));
  if (typeof it.ratings === "number" && it.ratings > 0) meta.push(`${it.ratings.toLocaleString()} ratings`);
  if (score !== undefined && score !== null) meta.push(scoreText(score));
  const open = el("button", { type: "button", class: "title link", onclick: () => openDetail(it.item) }, title);
  const actions = el("div", { class: "actions" }, starWidget(it.item, title));
  if (why) {
    actions.append(el("button", {
      type: "button", class: "why", "aria-label": `Why is ${title} recommended?`,
      onclick: () => openDetail(it.item, { why: true }),
    }, "Why?"));
  }
  return el("li", { class: fresh ? "item fresh" : "item", "data-item": String(it.item) },
    el("div", { class: "text" }, open, meta.length ? el("span", { class: "meta muted" }, meta.join(" · ")) : null),
    actions);
}

function scoreText(score) {
  return state.model && state.model.kind === "regression" ? `predicted ${fmt(score)}★` : `score ${fmt(score, 3)}`;
}

// ----- search -----------------------------------------------------------------------------------
let searchTimer = null;
let searchCtl = null;

function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, SEARCH_DELAY_MS);
}

async function runSearch() {
  const q = $("search-input").value.trim();
  if (searchCtl) searchCtl.abort();
  if (!q) {
    $("search-results").replaceChildren();
    setStatus("search-status", "Type part of a title.");
    return;
  }
  searchCtl = new AbortController();
  setStatus("search-status", "Searching…");
  try {
    const res = await api(`/v1/items?q=${enc(q)}&limit=12`, { signal: searchCtl.signal });
    $("search-results").replaceChildren(...res.items.map((it) => itemRow(it)));
    const n = res.items.length;
    setStatus("search-status", n ? `${n} movie${n === 1 ? "" : "s"} match “${q}”.` : `No movie matches “${q}”.`);
  } catch (e) {
    if (e.name === "AbortError") return;
    setStatus("search-status", "Search failed.");
    reportError("Search failed", e, runSearch);
  }
}

// ----- recommendations ----------------------------------------------------------------------------
let recSeq = 0;

function showRateFirst() {
  $("recs").replaceChildren();
  setStatus("recs-status", "Rate a few movies and recommendations appear here.");
}

async function refreshRecs() {
  const mine = ++recSeq;
  if (state.ratings.size === 0 && state.user.startsWith("web-")) {
    showRateFirst(); // an id this page made has no training history: nothing to ask for yet
    return;
  }
  setStatus("recs-status", "Updating…");
  try {
    const res = await api(`${userPath()}/recommendations?k=10`);
    if (mine !== recSeq) return; // a later refresh has started; its answer is the one to show
    const before = state.recIds;
    state.recIds = new Set(res.items.map((it) => String(it.item)));
    const list = $("recs");
    keepFocus(list, () => list.replaceChildren(...res.items.map((it) => itemRow(it, {
      score: it.score, why: true, fresh: before.size > 0 && !before.has(String(it.item)),
    }))));
    state.recRenders += 1;
    list.dataset.renders = String(state.recRenders);
    const basis = res.folded_in
      ? `from your ${res.history_size} rating${res.history_size === 1 ? "" : "s"}`
      : "from your training history";
    setStatus("recs-status", `Top ${res.items.length} ${basis}, updated ${new Date().toLocaleTimeString()}.`);
  } catch (e) {
    if (mine !== recSeq) return;
    if (e instanceof ApiError && e.status === 404 && e.code === "unknown_id" && state.ratings.size === 0) {
      showRateFirst();
      return;
    }
    setStatus("recs-status", "Could not update the recommendations.");
    reportError("Recommendations failed", e, refreshRecs);
  }
}

// ----- one movie: details, similar movies, why ----------------------------------------------------
let detailSeq = 0;

async function openDetail(item, { why = false } = {}) {
  const mine = ++detailSeq;
  const dialog = $("detail");
  $("detail-title").textContent = "Loading…";
  $("detail-meta").textContent = "";
  $("detail-rate").replaceChildren();
  $("detail-error").hidden = true;
  $("why-list").replaceChildren();
  $("similar-list").replaceChildren();
  setStatus("why-status", "");
  setStatus("similar-status", "Loading…");
  if (!dialog.open) dialog.showModal();
  history.replaceState(null, "", `#item=${enc(String(item))}`);
  let it;
  try {
    it = (await api(`/v1/items/${enc(String(item))}`)).item;
  } catch (e) {
    if (mine !== detailSeq) return;
    $("detail-title").textContent = "Movie not found";
    $("detail-error").textContent = e instanceof ApiError && e.status === 404
      ? `No such movie here: ${e.message}`
      : `Could not load this movie: ${e.message}`;
    $("detail-error").hidden = false;
    setStatus("similar-status", "");
    if (!(e instanceof ApiError && e.status === 404)) reportError("Could not load the movie", e, () => openDetail(item, { why }));
    return;
  }
  if (mine !== detailSeq) return;
  const title = titleOf(it);
  $("detail-title").textContent = title;
  const meta = [];
  if (it.genres && it.genres.length) meta.push(it.genres.join(", "));
  meta.push(`${it.ratings.toLocaleString()} training ratings`);
  $("detail-meta").textContent = meta.join(" · ");
  $("detail-rate").replaceChildren(el("span", { class: "muted" }, "Your rating: "), starWidget(it.item, title));
  await Promise.all([loadWhy(it, mine), loadSimilar(it, mine)]);
  if (why && mine === detailSeq) $("why-h").scrollIntoView({ block: "nearest" });
}

async function loadWhy(it, mine) {
  if (state.ratings.size === 0) {
    setStatus("why-status", "Rate a few movies first: the reasons are the movies you rated that lie closest to this one.");
    return;
  }
  setStatus("why-status", "Loading…");
  try {
    const res = await api(`${userPath()}/explain/${enc(String(it.item))}?k=5`);
    if (mine !== detailSeq) return;
    const top = Math.max(1e-9, ...res.because.map((r) => Math.abs(r.contribution)));
    const lines = res.because.map((r) => {
      const up = r.contribution >= 0;
      const weight = Math.round((100 * Math.abs(r.contribution)) / top);
      const stars = `${fmt(r.rating, 1).replace(/\.0$/, "")}★`;
      return el("li", { class: up ? "reason up" : "reason down" },
        el("span", { class: "sign", "aria-hidden": "true" }, up ? "▲" : "▼"),
        el("span", { class: "text" },
          "You rated ", el("strong", {}, titleOf(r)), ` ${stars}`,
          el("span", { class: "muted" }, ` · similarity ${fmt(r.similarity, 2)} · ${up ? "pulls it up" : "pulls it down"}`)),
        el("meter", { min: "0", max: "100", value: String(weight), "aria-label": `weight ${weight} percent` }));
    });
    $("why-list").replaceChildren(...lines);
    const n = res.history_size;
    const regression = state.model && state.model.kind === "regression";
    const score = res.score === null ? ""
      : regression ? ` Predicted rating for you: ${fmt(res.score)}★.` : ` Score for you: ${fmt(res.score, 3)}.`;
    setStatus("why-status", res.because.length
      ? `Based on your ${n} rating${n === 1 ? "" : "s"}: the movies you rated nearest to this one by the model's item embeddings, weighted by how you rated them.${score}`
      : `None of your ${n} rated movies bears on this one.${score}`);
  } catch (e) {
    if (mine !== detailSeq) return;
    if (e instanceof ApiError && e.status === 422 && e.code === "unsupported") {
      setStatus("why-status", `This model cannot explain its picks: ${e.message}`);
    } else {
      setStatus("why-status", `No explanation: ${e.message}`);
    }
  }
}

async function loadSimilar(it, mine) {
  try {
    const res = await api(`/v1/items/${enc(String(it.item))}/similar?k=8`);
    if (mine !== detailSeq) return;
    $("similar-list").replaceChildren(...res.items.map((s) => itemRow(s)));
    setStatus("similar-status", res.items.length ? "Nearest by the model's item embeddings:" : "No similar movies.");
  } catch (e) {
    if (mine !== detailSeq) return;
    setStatus("similar-status", e instanceof ApiError && e.code === "unsupported"
      ? `This model has no similar-items view: ${e.message}`
      : `Could not load similar movies: ${e.message}`);
  }
}

function itemFromHash() {
  const m = /^#item=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

// ----- explore: the t-SNE map of the item embeddings and its clusters ---------------------------------
// Loaded when the section first scrolls into view (the server computes the map once per model
// version, seconds the first time). The map is one SVG and one tab stop: the arrow keys move a cursor
// to the nearest movie in that direction, Enter opens the movie; a pointer finds the nearest dot.

const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_W = 600;
const MAP_H = 420;
const MAP_PAD = 12;
const HIT_PX = 14; // a pointer this close to a dot (in screen pixels) points at it
const GENRE_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2",
  "#edc948", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#8c564b"];
const OTHER_COLOURS = { other: "#8f8f96", "no genre": "#c9c9cf" };

const ex = {
  visible: false, started: false, seq: 0, map: null, clusters: null,
  colour: "genre", k: 12, cursor: -1, order: [],
};

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function clusterColour(c) {
  return `hsl(${Math.round((c * 137.508) % 360)} 62% 48%)`; // the golden angle: neighbours differ
}

function genreColour(genre) {
  if (genre in OTHER_COLOURS) return OTHER_COLOURS[genre];
  const i = ex.map ? ex.map.genres.indexOf(genre) : -1;
  return i >= 0 ? GENRE_COLOURS[i % GENRE_COLOURS.length] : OTHER_COLOURS.other;
}

function pointColour(p) {
  return ex.colour === "cluster" ? clusterColour(p.cluster) : genreColour(p.genre);
}

const px = (p) => MAP_PAD + p.x * (MAP_W - 2 * MAP_PAD);
const py = (p) => MAP_PAD + (1 - p.y) * (MAP_H - 2 * MAP_PAD);

function explorePath(view, params) {
  return `/v1/models/${enc(state.model.model.name)}/explore/${view}?${new URLSearchParams(params)}`;
}

function maybeStartExplore() {
  if (ex.visible && state.model && !ex.started) {
    ex.started = true;
    loadExplore();
  }
}

async function loadExplore() {
  const mine = ++ex.seq;
  setStatus("explore-status", "Computing the map of the model's item embeddings (a few seconds the first time)…");
  setStatus("clusters-status", "Loading…");
  try {
    const params = { k: ex.k, method: "kmeans" };
    const [map, clusters] = await Promise.all([
      api(explorePath("map", params)), api(explorePath("clusters", params)),
    ]);
    if (mine !== ex.seq) return;
    ex.map = map;
    ex.clusters = clusters;
    // Movies without genres would all be one grey "no genre": such a map is coloured by cluster.
    const hasGenres = map.genres.some((g) => !(g in OTHER_COLOURS));
    const byGenre = document.querySelector('input[name="explore-colour"][value="genre"]');
    byGenre.disabled = !hasGenres;
    if (!hasGenres && ex.colour === "genre") {
      ex.colour = "cluster";
      document.querySelector('input[name="explore-colour"][value="cluster"]').checked = true;
      $("explore-map").dataset.colour = ex.colour;
    }
    drawMap();
    drawLegend();
    drawClusters();
    const shown = map.subsampled
      ? `${map.n_points.toLocaleString()} of ${map.n_items.toLocaleString()} movies (${map.sample})`
      : `${map.n_points.toLocaleString()} movies`;
    setStatus("explore-status", `${shown}, coloured by ${ex.colour === "cluster" ? `${ex.k} clusters` : "main genre"}.`);
    $("explore").dataset.loaded = "true";
    loadKHint(mine);
  } catch (e) {
    if (mine !== ex.seq) return;
    setStatus("clusters-status", "");
    if (e instanceof ApiError && e.code === "unsupported") {
      setStatus("explore-status", `This model cannot be explored: ${e.message}`);
      $("map-wrap").hidden = true;
      $("cluster-table").hidden = true;
      return;
    }
    setStatus("explore-status", "Could not load the map.");
    reportError("The map could not be loaded", e, loadExplore);
  }
}

async function loadKHint(mine) {
  try {
    const sel = await api(explorePath("k-selection", { method: "kmeans" }));
    if (mine !== ex.seq) return;
    const best = sel.best_silhouette_k === null ? "" : `, ${sel.best_silhouette_k} by silhouette`;
    setStatus("explore-hint", `Suggested: ${sel.elbow_k} by the inertia elbow${best}.`);
  } catch {
    setStatus("explore-hint", ""); // only a hint: the map and table stand without it
  }
}

function drawMap() {
  const m = ex.map;
  const map = $("explore-map");
  const max = Math.max(1, ...m.points.map((p) => p.ratings));
  // Rarely rated movies first, so the familiar ones are drawn on top.
  ex.order = m.points.map((_, i) => i).sort((a, b) => m.points[a].ratings - m.points[b].ratings || a - b);
  const dots = svgEl("g", { class: "dots" });
  for (const i of ex.order) {
    const p = m.points[i];
    dots.append(svgEl("circle", {
      cx: px(p).toFixed(1), cy: py(p).toFixed(1), r: (1.6 + 4 * Math.sqrt(p.ratings / max)).toFixed(2),
      fill: pointColour(p), "data-i": i, "data-item": p.item, "data-c": p.cluster,
    }));
  }
  const labels = svgEl("g", { class: "labels", "aria-hidden": "true" });
  for (const i of m.labelled.slice(0, 12)) {
    const p = m.points[i];
    const t = svgEl("text", { x: px(p).toFixed(1), y: (py(p) - 7).toFixed(1), "text-anchor": p.x > 0.8 ? "end" : p.x < 0.2 ? "start" : "middle" });
    t.textContent = p.title.length > 28 ? `${p.title.slice(0, 27)}…` : p.title;
    labels.append(t);
  }
  const cursor = svgEl("circle", { id: "map-cursor", class: "cursor", r: 9, cx: -50, cy: -50 });
  map.replaceChildren(dots, labels, cursor);
  map.dataset.points = String(m.points.length);
  ex.cursor = -1;
  hideTip();
}

function recolour() {
  if (!ex.map) return;
  $("explore-map").querySelectorAll(".dots circle").forEach((c) => {
    c.setAttribute("fill", pointColour(ex.map.points[Number(c.dataset.i)]));
  });
  drawLegend();
}

// A colour key; set through the style object, as the page's content security policy refuses inline styles.
function swatch(colour) {
  const node = el("span", { class: "swatch", "aria-hidden": "true" });
  node.style.backgroundColor = colour;
  return node;
}

function drawLegend() {
  const m = ex.map;
  const counts = new Map();
  const key = (p) => (ex.colour === "cluster" ? p.cluster : p.genre);
  for (const p of m.points) counts.set(key(p), (counts.get(key(p)) || 0) + 1);
  let entries;
  if (ex.colour === "cluster") {
    const names = new Map((ex.clusters ? ex.clusters.clusters : []).map((c) => [c.cluster, c.name]));
    entries = [...counts.keys()].sort((a, b) => a - b)
      .map((c) => [clusterColour(c), `${c} · ${names.get(c) || "cluster"}`, counts.get(c)]);
  } else {
    entries = m.genres.filter((g) => counts.has(g)).map((g) => [genreColour(g), g, counts.get(g)]);
  }
  $("explore-legend").replaceChildren(...entries.map(([colour, name, n]) => el("li", {},
    swatch(colour), `${name} (${n})`)));
}

function drawClusters() {
  const rows = ex.clusters.clusters.map((c) => {
    const genres = c.genres.length
      ? c.genres.map((g) => `${g.genre} ×${fmt(g.lift, 1)}`).join(", ")
      : "none stands out";
    const titles = el("ul", { class: "cluster-titles" }, ...c.most_rated.slice(0, 5).map((it) => el("li", {},
      el("button", { type: "button", class: "title link", "data-item": String(it.item), onclick: () => openDetail(it.item) }, titleOf(it)))));
    const row = el("tr", { "data-cluster": String(c.cluster) },
      el("th", { scope: "row", "data-label": "Cluster" },
        swatch(clusterColour(c.cluster)),
        `${c.cluster} · ${c.name}`),
      el("td", { "data-label": "Movies" }, `${c.size.toLocaleString()} (${fmt(100 * c.share, 1)}%)`),
      el("td", { "data-label": "Genres (lift)" }, genres),
      el("td", { "data-label": "Most rated" }, titles),
      el("td", { "data-label": "Mean rating" }, c.mean_rating === null ? "—" : `${fmt(c.mean_rating, 2)}★`));
    row.addEventListener("mouseenter", () => highlightCluster(c.cluster));
    row.addEventListener("mouseleave", () => highlightCluster(null));
    row.addEventListener("focusin", () => highlightCluster(c.cluster));
    row.addEventListener("focusout", () => highlightCluster(null));
    return row;
  });
  $("cluster-rows").replaceChildren(...rows);
  const method = ex.clusters.method === "kmeans" ? "K-Means" : "agglomerative clustering";
  setStatus("clusters-status", `${ex.clusters.k} clusters by ${method} of all ${ex.clusters.n_items.toLocaleString()} movies; lift is a genre's share in the cluster over its share in the catalogue.`);
}

function highlightCluster(c) {
  const map = $("explore-map");
  map.classList.toggle("dimmed", c !== null);
  map.querySelectorAll(".dots circle").forEach((d) => d.classList.toggle("hl", c !== null && Number(d.dataset.c) === c));
}

// Pointer and keyboard on the map.
function svgPoint(e) {
  const ctm = $("explore-map").getScreenCTM();
  if (!ctm) return null;
  const pt = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse());
  return { x: pt.x, y: pt.y, scale: ctm.a || 1 };
}

function nearestPoint(e) {
  if (!ex.map) return -1;
  const at = svgPoint(e);
  if (!at) return -1;
  const limit = (HIT_PX / at.scale) ** 2;
  let best = -1;
  let bestD = limit;
  ex.map.points.forEach((p, i) => {
    const d = (px(p) - at.x) ** 2 + (py(p) - at.y) ** 2;
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

function describePoint(p) {
  const parts = [p.title];
  parts.push(p.genres.length ? p.genres.join(", ") : "no genre");
  parts.push(`cluster ${p.cluster}`, `${p.ratings.toLocaleString()} ratings`);
  if (p.mean_rating !== null) parts.push(`mean ${fmt(p.mean_rating, 1)}★`);
  return parts;
}

function showTip(i) {
  const p = ex.map.points[i];
  const tip = $("map-tip");
  const [title, ...rest] = describePoint(p);
  tip.replaceChildren(el("strong", {}, title), el("span", { class: "muted" }, rest.join(" · ")));
  tip.hidden = false;
  const ctm = $("explore-map").getScreenCTM();
  const wrap = $("map-wrap").getBoundingClientRect();
  if (!ctm) return;
  const pt = new DOMPoint(px(p), py(p)).matrixTransform(ctm);
  const x = pt.x - wrap.left;
  const y = pt.y - wrap.top;
  const w = tip.offsetWidth;
  tip.style.left = `${Math.max(0, Math.min(wrap.width - w, x - w / 2))}px`;
  tip.style.top = `${y > tip.offsetHeight + 14 ? y - tip.offsetHeight - 10 : y + 12}px`;
}

function hideTip() {
  $("map-tip").hidden = true;
}

function moveCursor(i) {
  ex.cursor = i;
  const p = ex.map.points[i];
  const cursor = $("map-cursor");
  cursor.setAttribute("cx", px(p).toFixed(1));
  cursor.setAttribute("cy", py(p).toFixed(1));
  $("explore-map").dataset.cursor = String(p.item);
  showTip(i);
  setStatus("map-focus", `${describePoint(p).join(", ")}. Enter opens similar movies.`);
}

function stepCursor(dx, dy) {
  const from = ex.map.points[ex.cursor];
  let best = -1;
  let bestCost = Infinity;
  ex.map.points.forEach((p, i) => {
    const ux = px(p) - px(from);
    const uy = py(p) - py(from);
    const along = ux * dx + uy * dy;
    if (i === ex.cursor || along <= 0) return;
    const across = Math.abs(ux * dy - uy * dx);
    const cost = along + 2 * across; // nearest in the direction, straying little from it
    if (cost < bestCost) { best = i; bestCost = cost; }
  });
  if (best >= 0) moveCursor(best);
}

function onMapKey(e) {
  if (!ex.map || !ex.map.points.length) return;
  const steps = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (e.key in steps) {
    e.preventDefault();
    if (ex.cursor < 0) moveCursor(ex.map.labelled[0] ?? 0);
    else stepCursor(...steps[e.key]);
  } else if ((e.key === "Enter" || e.key === " ") && ex.cursor >= 0) {
    e.preventDefault();
    openDetail(ex.map.points[ex.cursor].item);
  } else if (e.key === "Escape") {
    hideTip();
  }
}

function wireExplore() {
  const map = $("explore-map");
  map.addEventListener("pointermove", (e) => {
    const i = nearestPoint(e);
    map.classList.toggle("pointing", i >= 0);
    if (i >= 0) showTip(i);
    else if (ex.cursor >= 0 && document.activeElement === map) showTip(ex.cursor);
    else hideTip();
  });
  map.addEventListener("pointerleave", () => {
    if (ex.cursor >= 0 && document.activeElement === map) showTip(ex.cursor);
    else hideTip();
  });
  map.addEventListener("click", (e) => {
    const i = nearestPoint(e);
    if (i >= 0) openDetail(ex.map.points[i].item);
  });
  map.addEventListener("keydown", onMapKey);
  map.addEventListener("focus", () => {
    if (!ex.map || !ex.map.points.length) return;
    moveCursor(ex.cursor >= 0 ? ex.cursor : ex.map.labelled[0] ?? 0);
  });
  map.addEventListener("blur", hideTip);
  document.querySelectorAll('input[name="explore-colour"]').forEach((r) => r.addEventListener("change", () => {
    ex.colour = r.value;
    $("explore-map").dataset.colour = ex.colour;
    recolour();
    if (ex.map) setStatus("explore-status", $("explore-status").textContent.replace(/coloured by .*$/, `coloured by ${ex.colour === "cluster" ? `${ex.k} clusters` : "main genre"}.`));
  }));
  $("explore-k").addEventListener("change", () => {
    ex.k = Number($("explore-k").value);
    if (ex.started) loadExplore();
  });
  const watch = new IntersectionObserver((entries) => {
    if (entries.some((en) => en.isIntersecting)) {
      ex.visible = true;
      watch.disconnect();
      maybeStartExplore();
    }
  }, { rootMargin: "200px" });
  watch.observe($("explore"));
}

// ----- start ------------------------------------------------------------------------------------------
async function init() {
  hideError();
  $("user-id").textContent = state.user;
  try {
    await loadModel();
    maybeStartExplore();
    await loadRatings();
  } catch (e) {
    $("model").textContent = "Not connected.";
    reportError("The page could not start", e, init);
    return;
  }
  await refreshRecs();
  const item = itemFromHash();
  if (item) openDetail(item);
}

function wire() {
  $("model-pick").addEventListener("change", (e) => {
    const url = new URL(location.href);
    url.searchParams.set("model", e.target.value);
    url.hash = "";
    location.assign(url); // a fresh page for the other model: its scale, recommendations and map
  });
  $("search-input").addEventListener("input", onSearchInput);
  $("error-close").addEventListener("click", hideError);
  $("error-retry").addEventListener("click", () => {
    const again = retryAction;
    hideError();
    if (again) again();
  });
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("click", (e) => {
    if (e.target === $("detail")) $("detail").close(); // a click on the backdrop
  });
  $("detail").addEventListener("close", () => {
    detailSeq += 1;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  });
  window.addEventListener("hashchange", () => {
    const item = itemFromHash();
    if (item) openDetail(item);
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key-input").value.trim() || null;
    if (state.key) session.set("recengine.apiKey", state.key);
    $("key-form").hidden = true;
    init();
  });
}

wire();
wireExplore();
init();
