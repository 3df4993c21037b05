"""Model directories: what ``recengine train`` writes and ``recommend``/``predict``/serving load.

A model directory holds ``weights.safetensors`` (the model's arrays and the seen matrix with its ratings),
``config.json`` (format and library versions, model name, params, capabilities, rating scale),
``users.json``/``items.json`` (the id maps, in internal order), ``items.parquet`` (titles, years and
genres that serving shows), ``metrics.json`` (training history, evaluation figures), ``curves.png``
and ``manifest.json`` (sha256 and size of every other file). No pickle anywhere: loading a
directory from elsewhere runs no code from it.

It is written into a temporary directory beside its destination and renamed into place, so a
reader sees the old model or the new one, never half of one; loading checks the manifest first and
names the file that is missing, truncated or corrupt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from recengine.data.interactions import IdMap, RatingScale
from recengine.errors import (
    CapabilityError,
    ConfigError,
    DataError,
    RecengineError,
    listed,
    write_failure,
)
from recengine.paths import existing_ancestor

if TYPE_CHECKING:
    import polars as pl

    from recengine.data.dataset import Dataset
    from recengine.models.base import Recommender

FORMAT = "recengine-model"
FORMAT_VERSION = 1
CONFIG, MANIFEST, WEIGHTS = "config.json", "manifest.json", "weights.safetensors"
USERS, ITEMS, ITEM_META = "users.json", "items.json", "items.parquet"
METRICS, CURVES = "metrics.json", "curves.png"
REQUIRED = (CONFIG, WEIGHTS, USERS, ITEMS)
MODEL_FILES = frozenset({CONFIG, MANIFEST, WEIGHTS, USERS, ITEMS, ITEM_META, METRICS, CURVES})
_OWN_TEMP = re.compile(r"\..+\.(tmp|old)-[0-9a-f]+")  # save's own temporary names
ITEM_COLUMNS = ("item", "title", "year", "genres")
_CHUNK = 1 << 20


class ArtifactError(DataError):
    """A model directory that cannot be used: missing, not ours, incomplete, corrupt or too new."""


# ----- saving ----------------------------------------------------------------------------------
def save(
    model: Recommender,
    out_dir: Path,
    *,
    dataset: Dataset | None = None,
    metrics: dict[str, Any] | None = None,
    fit_info: dict[str, Any] | None = None,
) -> Path:
    """Write fitted ``model`` as a model directory at ``out_dir`` and return its path.

    ``dataset`` adds its name and item metadata; ``metrics`` (evaluation figures) go to
    metrics.json beside the training history; ``fit_info`` (time, rows) to config.json. An
    existing model directory at ``out_dir`` is replaced only once the new one is complete; any
    other non-empty directory there is refused, and so is a model directory that also holds other
    files (replacing it would delete them).
    """
    out_dir = Path(os.path.abspath(out_dir))  # "." and ".." name a real parent to rename within
    check_writable(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        above = existing_ancestor(out_dir.parent)
        why = f"{above} is a file, not a directory" if not above.is_dir() else e.strerror
        raise ArtifactError(f"cannot create the model's directory: {why}", out_dir) from None
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        os.mkdir(tmp)  # mode 0o777 less the umask, like any directory the user makes
    except OSError as e:
        raise ArtifactError(f"cannot write the model directory: {write_failure(e)}", out_dir) from None
    try:
        _write(tmp, model, dataset, metrics, fit_info)
        _swap_into_place(tmp, out_dir)
    except (OSError, SafetensorError) as e:  # a full disk, say: the earlier model stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArtifactError(f"cannot write the model directory: {write_failure(e)}", out_dir) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write(
    tmp: Path,
    model: Recommender,
    dataset: Dataset | None,
    metrics: dict[str, Any] | None,
    fit_info: dict[str, Any] | None,
) -> None:
    try:
        state = model.state_arrays()
    except NotImplementedError:
        raise CapabilityError(f"{model.name} cannot be saved as a model directory") from None
    seen = model.seen().tocsr()
    tensors = {f"model.{k}": np.asarray(v, order="C") for k, v in state.items()}
    tensors["seen.indptr"] = seen.indptr.astype(np.int64)
    tensors["seen.indices"] = seen.indices.astype(np.int32)
    tensors["seen.data"] = seen.data.astype(np.float32)  # the training ratings (fold-in reuses them)
    tensors["seen.shape"] = np.asarray(seen.shape, dtype=np.int64)
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "recengine-weights"})
    from recengine import __version__

    scale = model.scale
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recengine_version": __version__,
        "model": model.name,
        "params": model.get_params(),
        "capabilities": model.fitted_capabilities().as_dict(),
        "rating_scale": _scale_json(scale),
        "input_rating_scale": _scale_json(model.input_scale),
        "n_users": len(model.users),
        "n_items": len(model.items),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": None if dataset is None else {"name": dataset.name, "layout": dataset.layout},
        "fit": fit_info or {},
    }
    _write_json(tmp / CONFIG, config)
    os.chmod(tmp / WEIGHTS, (tmp / CONFIG).stat().st_mode & 0o777)  # safetensors writes 0600
    for name, idmap in ((USERS, model.users), (ITEMS, model.items)):
        _write_json(tmp / name, {"name": idmap.name, "numeric": idmap.is_numeric, "ids": idmap.to_list()})
    if dataset is not None and dataset.items is not None:
        _item_metadata(dataset.items, model.items).write_parquet(tmp / ITEM_META)
    _write_json(tmp / METRICS, {"training": model.history or {}, "evaluation": metrics or {}})
    from recengine.training.curves import history_rows, plot_history

    rows = history_rows(model.history)
    if rows:
        plot_history(rows, tmp / CURVES, title=f"{model.name} learning curves")
    files = {}
    for f in sorted(p for p in tmp.iterdir() if p.is_file()):
        _fsync(f)
        files[f.name] = {"sha256": _sha256(f), "bytes": f.stat().st_size}
    _write_json(tmp / MANIFEST, {"format": "recengine-manifest", "format_version": 1, "files": files})
    _fsync(tmp / MANIFEST)


def _item_metadata(items: pl.DataFrame, idmap: IdMap) -> pl.DataFrame:
    """The serving columns of the data set's item table, for the items the model knows."""
    import polars as pl

    df = items.select([c for c in ITEM_COLUMNS if c in items.columns])
    numeric_col = df.schema["item"].is_integer()
    if numeric_col == idmap.is_numeric:
        known = pl.Series(idmap.to_list()).cast(df.schema["item"]).implode()
        df = df.filter(pl.col("item").is_in(known))
    return df


def check_writable(out_dir: Path) -> None:
    """Refuse early (before a long fit) a destination that :func:`save` would refuse."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ArtifactError("exists and is not a directory; give a new path for the model", out_dir)
    if not any(out_dir.iterdir()):
        return
    if not _is_ours(out_dir):
        raise ArtifactError(
            "is a directory that holds other files, not a recengine model; refusing to replace it "
            "(give a new or empty directory)",
            out_dir,
        )
    other = _foreign_files(out_dir)
    if other:
        raise ArtifactError(
            f"is a recengine model directory that also holds other files ({listed(other)}); refusing to "
            "replace it, which would delete them (move them out or give a new directory)",
            out_dir,
        )


def _foreign_files(path: Path) -> list[str]:
    """Names in model directory ``path`` that are neither model files nor save's temporary ones."""
    try:
        listed = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("files") or {}
    except (OSError, ValueError, AttributeError):
        listed = {}
    own = MODEL_FILES | {n for n in listed if isinstance(n, str)}
    return sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in path.iterdir()
        if p.name not in own and not _OWN_TEMP.fullmatch(p.name)
    )


def _is_ours(path: Path) -> bool:
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` to ``out_dir``; an old model there goes only after that."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        _fsync(out_dir.parent)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{secrets.token_hex(4)}"
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    _fsync(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


# ----- checking ---------------------------------------------------------------------------------
def verify(path: Path) -> dict[str, Any]:
    """Check ``path`` against its manifest (every file there, of the right size and sha256) and its
    format version; raise :class:`ArtifactError` naming the first bad file, else summarize."""
    path = Path(path)
    config, files = _verified(path)
    return {
        "path": str(path),
        "ok": True,
        "model": config.get("model"),
        "format_version": config.get("format_version"),
        "files": files,
        "bytes": sum(int(f["bytes"]) for f in files.values()),
    }


def _verified(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    if not path.exists():
        raise ArtifactError("no such model directory", path)
    if not path.is_dir():
        raise ArtifactError(
            "not a model directory (a model is a directory written by `recengine train`)", path
        )
    if not (path / CONFIG).is_file():
        raise ArtifactError(f"not a recengine model directory: it has no {CONFIG}", path)
    try:
        config: Any = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None  # the manifest check below says whether it is corrupt or foreign
    ours = isinstance(config, dict) and config.get("format") == FORMAT
    if ours:
        _check_version(config, path / CONFIG)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        if ours:
            raise ArtifactError(f"incomplete model directory: {MANIFEST} is missing", manifest_path)
        raise ArtifactError(f"not a recengine model directory: it has no {MANIFEST}", path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"corrupt {MANIFEST}: not valid JSON ({e})", manifest_path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "recengine-manifest":
        raise ArtifactError(f"not a recengine model directory: foreign {MANIFEST}", manifest_path)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError("corrupt manifest: no file list", manifest_path)
    for name in REQUIRED:
        if name not in files:
            raise ArtifactError(f"incomplete model directory: {name} is not in the manifest", manifest_path)
    for name, entry in files.items():
        _check_file(path, name, entry)
    if not ours:
        raise ArtifactError("not a recengine model: config.json is another program's", path / CONFIG)
    return config, files


def _check_version(config: dict[str, Any], where: Path) -> None:
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ArtifactError(f"format_version {version!r} is not a version number", where)
    if version > FORMAT_VERSION:
        from recengine import __version__

        raise ArtifactError(
            f"written in model format {version} by recengine {config.get('recengine_version', '?')}; "
            f"this recengine ({__version__}) reads format {FORMAT_VERSION} and older: upgrade recengine",
            where,
        )


def _check_file(root: Path, name: str, entry: Any) -> None:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ArtifactError(
            f"manifest names {name!r}, which is not a file of this directory", root / MANIFEST
        )
    f = root / name
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("sha256"), str)
        or isinstance(entry.get("bytes"), bool)
        or not isinstance(entry.get("bytes"), int)
        or entry["bytes"] < 0
    ):
        raise ArtifactError(f"corrupt manifest entry for {name[:80]!r}", root / MANIFEST)
    try:
        present = f.is_file()
    except OSError as e:  # a name too long for the file system, say
        raise ArtifactError(
            f"manifest names {name[:80]!r}, which cannot be a file here ({e.strerror})", root / MANIFEST
        ) from None
    if not present:
        raise ArtifactError(f"missing: {name} is listed in the manifest but not in the directory", f)
    size, expected = f.stat().st_size, entry["bytes"]
    if size < expected:
        raise ArtifactError(f"truncated or edited: {size} of the {expected} bytes the manifest says", f)
    if size > expected:
        raise ArtifactError(f"corrupt: {size} bytes where the manifest says {expected}", f)
    digest = _sha256(f)
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"corrupt: sha256 {digest[:12]}… does not match the manifest's {str(entry['sha256'])[:12]}…", f
        )


# ----- loading ----------------------------------------------------------------------------------
def load(path: Path) -> Recommender:
    """The model saved at ``path``, verified first; refuses anything :func:`verify` refuses."""
    from recengine.models.registry import create

    path = Path(path)
    config, files = _verified(path)
    name = config.get("model")
    try:
        model = create(str(name), config.get("params") or {})
    except ConfigError as e:
        raise ArtifactError(f"this recengine cannot build the saved model: {e}", path / CONFIG) from None
    try:
        arrays = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"unreadable weights ({e})", path / WEIGHTS) from None
    users = _read_idmap(path / USERS, "user")
    items = _read_idmap(path / ITEMS, "item")
    try:
        n_rows, n_cols = (int(x) for x in arrays["seen.shape"])
        indptr, indices, values = arrays["seen.indptr"], arrays["seen.indices"], arrays["seen.data"]
        seen = sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_cols))
    except (KeyError, ValueError) as e:
        raise ArtifactError(f"the seen matrix is missing or malformed ({e})", path / WEIGHTS) from None
    if seen.shape != (len(users), len(items)):
        raise ArtifactError(
            f"the seen matrix is {seen.shape[0]} × {seen.shape[1]}, the id maps say "
            f"{len(users)} users × {len(items)} items",
            path / WEIGHTS,
        )
    scale = _scale_from_json(config.get("rating_scale"))
    input_scale = _scale_from_json(config.get("input_rating_scale"))  # absent before it was saved
    history: dict[str, Any] = {}
    if METRICS in files:
        history = dict(_read_json(path / METRICS).get("training") or {})
    state = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
    try:
        model.restore(users, items, scale, seen, state, history, input_scale=input_scale)
    except (KeyError, ValueError, TypeError, IndexError, RecengineError) as e:
        raise ArtifactError(f"the weights do not fit a {name} model: {e}", path / WEIGHTS) from None
    return model


def _scale_json(scale: RatingScale | None) -> dict[str, float | None] | None:
    return None if scale is None else {"low": scale.low, "high": scale.high, "step": scale.step}


def _scale_from_json(rs: Any) -> RatingScale | None:
    return None if rs is None else RatingScale(float(rs["low"]), float(rs["high"]), rs.get("step"))


def _read_json(f: Path) -> dict[str, Any]:
    try:
        out = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"not valid JSON ({e})", f) from None
    if not isinstance(out, dict):
        raise ArtifactError("expected a JSON object", f)
    return out


def _read_idmap(f: Path, name: str) -> IdMap:
    raw = _read_json(f)
    ids = raw.get("ids")
    if not isinstance(ids, list):
        raise ArtifactError("no id list", f)
    try:
        if raw.get("numeric") and ids:
            return IdMap(np.asarray(ids, dtype=np.int64), name)
        return IdMap(np.asarray([str(x) for x in ids], dtype=str), name)
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"malformed id map ({e})", f) from None


def item_metadata(path: Path) -> pl.DataFrame | None:
    """The saved item metadata (item, title, year, genres), or None when the data set had none."""
    import polars as pl

    f = Path(path) / ITEM_META
    if not f.is_file():
        return None
    try:
        return pl.read_parquet(f)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise ArtifactError(f"unreadable item metadata ({e})", f) from None


def item_titles(path: Path) -> dict[Any, str]:
    """External item id → title from the saved item metadata (empty when there is none)."""
    df = item_metadata(path)
    if df is None or "title" not in df.columns:
        return {}
    return {k: v for k, v in zip(df["item"].to_list(), df["title"].to_list(), strict=True) if v is not None}


def info(path: Path) -> dict[str, Any]:
    """What a model directory holds, from its config, manifest and metrics (checksums not read)."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ArtifactError(f"not a recengine model directory: it has no {CONFIG}", path)
    config = _read_json(path / CONFIG)
    if config.get("format") != FORMAT:
        raise ArtifactError("not a recengine model: config.json is another program's", path / CONFIG)
    out: dict[str, Any] = {"path": str(path), **{k: v for k, v in config.items() if k != "format"}}
    if (path / MANIFEST).is_file():
        files = _read_json(path / MANIFEST).get("files") or {}
        sizes = {k: v.get("bytes") for k, v in files.items() if isinstance(v, dict)}
        out["files"] = {
            k: b if isinstance(b, int) and not isinstance(b, bool) else None for k, b in sizes.items()
        }
        out["bytes"] = sum(b or 0 for b in out["files"].values())  # checked by load, shown as found here
    if (path / METRICS).is_file():
        m = _read_json(path / METRICS)
        training = m.get("training") or {}
        from recengine.training.curves import history_rows

        rows = history_rows(training)
        out["training"] = {
            "epochs": len(rows),
            "last": rows[-1] if rows else None,
            **{
                k: training[k] for k in ("best_epoch", "stopped", "val_metric", "best_value") if k in training
            },
        }
        out["evaluation"] = m.get("evaluation") or {}
    return out


# ----- small helpers ----------------------------------------------------------------------------
def _jsonable(o: Any) -> Any:
    """JSON data from numpy scalars and arrays, tuples and paths; NaN and inf become null."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def _write_json(f: Path, obj: Any) -> None:
    f.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _sha256(f: Path) -> str:
    h = hashlib.sha256()
    with f.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync(p: Path) -> None:
    """Flush a file or a directory entry to disk (skipped where the platform cannot open it)."""
    with contextlib.suppress(OSError):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
