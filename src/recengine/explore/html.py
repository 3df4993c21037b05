"""The exploration as one self-contained HTML file: opens from disk with no network at all.

The map is drawn on a canvas by a few lines of inline script from data embedded in the page
(hover a point for its title, genres, ratings and clusters; switch the colouring; search a title);
tables are plain HTML, so they read without script; pictures are PNG data URIs.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .report import cluster_colours, genre_colours

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:18px;color:#222}
h1{font-size:22px;margin:.2em 0}h2{font-size:18px;margin-top:1.6em;border-bottom:1px solid #ddd}
.muted{color:#666}table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
#wrap{position:relative;display:flex;gap:14px}#map{border:1px solid #ddd;cursor:crosshair}
#legend{font-size:12px;max-height:760px;overflow:auto;min-width:210px}
#legend div{white-space:nowrap;cursor:pointer}#legend span{display:inline-block;width:11px;height:11px;
border-radius:6px;margin-right:6px;vertical-align:-1px}
#tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #999;border-radius:4px;
padding:5px 8px;font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.2);display:none;max-width:340px}
.controls{margin:.6em 0}.controls>*{margin-right:10px}img{max-width:100%}
.sw{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
"""

_JS = r"""
const D = JSON.parse(document.getElementById('explore-data').textContent);
const P = D.map.points, N = P.x.length, cv = document.getElementById('map'), ctx = cv.getContext('2d');
const tip = document.getElementById('tip'), sel = document.getElementById('colour'),
  q = document.getElementById('search'), W = cv.width, H = cv.height, M = 14;
const maxR = Math.max(1, ...P.ratings), base = Math.max(1.2, Math.min(6, 9 / Math.sqrt(N / 400)));
const px = i => M + P.x[i] * (W - 2 * M), py = i => M + (1 - P.y[i]) * (H - 2 * M);
const rad = i => base * (0.45 + Math.log1p(P.ratings[i]) / Math.log1p(maxR));
const order = [...Array(N).keys()].sort((a, b) => P.ratings[a] - P.ratings[b]);
let hidden = new Set(), match = null;
function scheme() {
  const m = sel.value;
  if (m === 'genre') return {codes: P.genre, colours: D.colours.genre,
    names: D.map.genres.map(g => g)};
  return {codes: P.clusters[m], colours: D.colours[m],
    names: D.clusters[m].map(c => c.cluster + ': ' + c.name + ' (' + c.size + ')')};
}
function draw() {
  const s = scheme();
  ctx.clearRect(0, 0, W, H);
  for (const i of order) {
    const c = s.codes[i];
    if (hidden.has(c)) continue;
    const dim = match && !match.has(i);
    ctx.globalAlpha = dim ? 0.08 : 0.8;
    ctx.fillStyle = s.colours[c];
    ctx.beginPath(); ctx.arc(px(i), py(i), rad(i), 0, 6.283); ctx.fill();
  }
  ctx.globalAlpha = 1; ctx.font = '11px system-ui,sans-serif'; ctx.lineWidth = 3;
  ctx.strokeStyle = 'white'; ctx.fillStyle = '#111';
  const shown = match ? [...match].slice(0, 40) : D.map.labelled, boxes = [];
  for (const i of shown) {  // name a point only where its label overlaps no other label
    if (hidden.has(s.codes[i])) continue;
    const t = P.title[i].length > 32 ? P.title[i].slice(0, 31) + '…' : P.title[i];
    const w = ctx.measureText(t).width, h = 12;
    for (const [dx, dy] of [[5, -4], [5, 12], [-5 - w, -4], [-5 - w, 12]]) {
      const b = [px(i) + dx, py(i) + dy - h + 2, w, h];
      const free = b[0] >= 0 && b[0] + w <= W && b[1] >= 0 && b[1] + h <= H && !boxes.some(o =>
        b[0] < o[0] + o[2] && o[0] < b[0] + w && b[1] < o[1] + o[3] && o[1] < b[1] + h);
      if (!free) continue;
      boxes.push(b);
      ctx.strokeText(t, px(i) + dx, py(i) + dy); ctx.fillText(t, px(i) + dx, py(i) + dy);
      break;
    }
  }
  const lg = document.getElementById('legend'); lg.innerHTML = '';
  const present = new Set(s.codes);
  s.names.forEach((name, c) => {
    if (!present.has(c)) return;
    const d = document.createElement('div');
    d.innerHTML = '<span style="background:' + s.colours[c] + '"></span>';
    d.appendChild(document.createTextNode(name));
    d.style.opacity = hidden.has(c) ? 0.35 : 1;
    d.title = 'click to hide or show';
    d.onclick = () => { hidden.has(c) ? hidden.delete(c) : hidden.add(c); draw(); };
    lg.appendChild(d);
  });
}
const G = 40, grid = new Map();
for (let i = 0; i < N; i++) {
  const key = Math.floor(P.x[i] * G) + ',' + Math.floor(P.y[i] * G);
  if (!grid.has(key)) grid.set(key, []); grid.get(key).push(i);
}
cv.addEventListener('mousemove', e => {
  const r = cv.getBoundingClientRect(), mx = (e.clientX - r.left) * W / r.width,
    my = (e.clientY - r.top) * H / r.height;
  const gx = (mx - M) / (W - 2 * M), gy = 1 - (my - M) / (H - 2 * M), s = scheme();
  let best = -1, bd = 100;
  for (let a = -1; a <= 1; a++) for (let b = -1; b <= 1; b++) {
    for (const i of grid.get((Math.floor(gx * G) + a) + ',' + (Math.floor(gy * G) + b)) || []) {
      if (hidden.has(s.codes[i])) continue;
      const d = (px(i) - mx) ** 2 + (py(i) - my) ** 2;
      if (d < bd) { bd = d; best = i; }
    }
  }
  if (best < 0) { tip.style.display = 'none'; return; }
  const cl = Object.keys(P.clusters).map(m => m + ' cluster ' + P.clusters[m][best]).join('<br>');
  const esc = t => String(t).replace(/[&<>"]/g,
    c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  tip.innerHTML = '<b>' + esc(P.title[best]) + '</b><br>' + esc(P.genres[best] || 'no genre') +
    '<br>' + P.ratings[best] + ' ratings' + (P.mean_rating[best] == null ? '' : ', mean ' +
    P.mean_rating[best]) + '<br>item ' + esc(P.item[best]) + (cl ? '<br>' + cl : '');
  tip.style.display = 'block';
  tip.style.left = (e.clientX - r.left + 14) + 'px'; tip.style.top = (e.clientY - r.top + 10) + 'px';
});
cv.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
sel.onchange = () => { hidden = new Set(); draw(); };
q.oninput = () => {
  const t = q.value.trim().toLowerCase();
  match = t.length < 2 ? null : new Set([...Array(N).keys()].filter(i => P.title[i].toLowerCase().includes(t))
    .sort((a, b) => P.ratings[b] - P.ratings[a]));
  draw();
};
draw();
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if j in numeric else ''}>{c}</td>" for j, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _clusters_html(method: str, table: list[dict[str, Any]], colours: list[str]) -> str:
    rows = []
    for c in table:
        genres = (
            ", ".join(f"{_e(g['genre'])} ×{g['lift']:.2f} ({g['share']:.0%})" for g in c["genres"]) or "–"
        )
        titles = "; ".join(_e(t["title"]) for t in c["most_rated"])
        sw = f"<span class=sw style='background:{colours[c['cluster']]}'></span>{c['cluster']}"
        rows.append([sw, str(c["size"]), f"{c['share']:.1%}", genres, titles, _num(c["mean_rating"], 2)])
    return f"<h3>{_e(method)}</h3>" + _table(
        [
            "cluster",
            "items",
            "share",
            "over-represented genres (lift, share in cluster)",
            "most-rated titles",
            "mean rating",
        ],
        rows,
        {1, 2, 5},
    )


def _neighbours_html(entries: list[dict[str, Any]], users: bool = False) -> str:
    parts = []
    for n_entry, e in enumerate(entries):
        q = e["query"]
        if users:
            head = f"user {_e(q['user'])} <span class=muted>({q['ratings']} ratings)</span>"
            rows = [
                [_e(n["user"]), _num(n["similarity"]), str(n["ratings"]), str(n["shared_items"])]
                for n in e["neighbours"]
            ]
            cols = ["user", "cosine", "ratings", "items both rated"]
        else:
            head = (
                f"{_e(q['title'])} <span class=muted>({_e(q['year'])}; {_e(', '.join(q['genres']))}; "
                f"{q['ratings']} ratings)</span>"
            )
            rows = [
                [
                    _e(n["title"]),
                    _e(n["year"]),
                    _e(", ".join(n["genres"])),
                    _num(n["similarity"]),
                    str(n["ratings"]),
                ]
                for n in e["neighbours"]
            ]
            cols = ["nearest", "year", "genres", "cosine", "ratings"]
        parts.append(
            f"<details{' open' if n_entry == 0 else ''}><summary>{head}</summary>"
            f"{_table(cols, rows, {1, 2, 3} if users else {3, 4})}"
            "</details>"
        )
    return "".join(parts)


def _measures_html(m: dict[str, Any] | None) -> str:
    if not m:
        return "<p class=muted>No genres in this model's item metadata: nothing to measure against.</p>"
    rows = [
        [
            f"cluster purity ({_e(method)})",
            _num(r["observed"]),
            f"{_num(r['random'])} ± {_num(r['random_std'])}",
            f"{r['ratio']:.2f}×",
            str(r["n"]),
        ]
        for method, r in m["purity"].items()
    ]
    nb = m["neighbour_genre_share"]
    rows.append(
        [
            f"neighbours sharing a genre (k={nb['k']})",
            _num(nb["observed"]),
            _num(nb["random"]),
            f"{nb['ratio']:.2f}×",
            str(nb["n"]),
        ]
    )
    return _table(["measure", "model", "random", "ratio", "items"], rows, {1, 2, 3, 4}) + (
        "<p class=muted>Purity: share of a cluster's items carrying its most common genre; random: the same "
        "cluster sizes with items shuffled. Neighbours: share of (item, nearest item) pairs with a genre in "
        "common; random: the same share over all pairs of items.</p>"
    )


def write_html(result: dict[str, Any], pngs: dict[str, Path], path: Path) -> Path:
    """The report at ``path``: interactive map, k-selection, clusters, neighbours, measures."""
    colours: dict[str, list[str]] = {"genre": genre_colours(result["map"]["genres"])}
    for method, table in result["clusters"].items():
        colours[method] = cluster_colours(len(table))
    payload = {"map": result["map"], "clusters": result["clusters"], "colours": colours}
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    m = result["map"]
    info = m["tsne"]
    sub = (
        f"a subsample of {m['n_points']:,} of {m['n_items']:,} items (the most rated half of the cap, the "
        "rest drawn in proportion to ratings; seeded)"
        if m["subsampled"]
        else f"all {m['n_items']:,} items"
    )
    options = "".join(f"<option value='{_e(k)}'>{_e(k)} clusters</option>" for k in result["clusters"])
    # Items without genres would all be one grey "no genre": the map opens coloured by cluster.
    genre_option = "<option value=genre>main genre</option>" if result.get("has_genres", True) else ""
    title = f"{result['model']}" + (f" on {result['data']}" if result.get("data") else "")
    sel = result.get("k_selection")
    ksel = ""
    if sel:
        notes = "; ".join(
            f"{_e(mm)}: elbow at k={sel[mm]['elbow_k']}, best silhouette at k={sel[mm]['best_silhouette_k']}"
            for mm in result["clusters"]
            if mm in sel
        )
        img = (
            f"<img alt='k selection' src='{_png_uri(pngs['k_selection'])}'>" if "k_selection" in pngs else ""
        )
        ksel = f"<h2>Choosing k</h2><p>{notes}. This report uses k={result['k']}.</p>{img}"
    clusters = "".join(_clusters_html(mm, t, colours[mm]) for mm, t in result["clusters"].items())
    users = ""
    if result.get("user_neighbours"):
        users = "<h2>Similar users</h2>" + _neighbours_html(result["user_neighbours"], users=True)
    static = "".join(
        f"<p><img alt='{_e(k)}' src='{_png_uri(p)}'></p>" for k, p in pngs.items() if k.startswith("map_")
    )
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Embeddings of {_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>
<h1>What {_e(title)} learned about its items</h1>
<p class=muted>{result["n_items"]:,} items, {result["dimensions"]}-dimensional vectors;
map: t-SNE ({_e(info["backend"])}, perplexity {info["perplexity"]:.0f}, seed {info["seed"]}) of {sub}.
Point size: number of ratings.</p>
<h2>Map</h2>
<div class=controls><label>colour by <select id=colour>{genre_option}{options}
</select></label><input id=search placeholder="find a title…" size=28></div>
<div id=wrap><canvas id=map width=900 height=760></canvas><div id=legend></div><div id=tip></div></div>
<h2>Do the vectors know genres?</h2>{_measures_html(result.get("measures"))}
{ksel}
<h2>Clusters (k={result["k"]})</h2>{clusters}
<h2>Similar items</h2>{_neighbours_html(result["neighbours"])}
{users}
<h2>Static maps</h2><details><summary>PNG versions</summary>{static}</details>
<script type="application/json" id="explore-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
