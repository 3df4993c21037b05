"""SageMaker's invocation formats (``POST /invocations``), each a pluggable handler.

A request body (``application/json``: ``{"instances": [...]}``; ``application/jsonlines``: one
instance per line) is a list of instances; the first handler in :data:`HANDLERS` that accepts the
first instance answers them all, one prediction per instance, in SageMaker's response shape. Adding a
format (say, a factorization-machine model with side features) is one more :class:`Handler`.

- :class:`Object2VecHandler`: ``{"in0": [user], "in1": [movie]}`` → ``{"scores": [rating]}`` for a
  regression model, ``{"scores": [p0, p1]}`` for a binary classifier; one side only →
  ``{"embeddings": [...]}`` (the user's for ``in0``, the movie's for ``in1``). Ids are the data
  set's external ids, as integers or strings (the seed's notebook sent ``[str(u)]``); a model trained
  on JSON Lines pairs takes the token sequences of its training file instead. A ``label`` (a training
  line sent as it is) is ignored.
- :class:`FeatureRowsHandler`: factorization machines' ``{"features": [...]}`` (dense) or
  ``{"data": {"features": {"keys": [...], "shape": [n], "values": [...]}}}`` (sparse) rows in the
  seed's one-hot layout (user block, then item block, by the model's internal ids) →
  ``{"score": s}``, plus ``"predicted_label"`` for a binary classifier.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, cast

import numpy as np

from recengine.data.interactions import INT64_MAX, INT64_MIN
from recengine.errors import CapabilityError, DataError, RecengineError, UnknownIdError
from recengine.serving.models import ServedModel
from recengine.serving.service import ids_for

JSON = "application/json"
JSONLINES = "application/jsonlines"
JSONLINES_ALIASES = (JSONLINES, "application/jsonl", "application/x-jsonlines")
MAX_INSTANCES = 10_000


class InvocationError(RecengineError):
    """A body that is not a list of instances of a format this server reads."""


class NotAcceptableError(RecengineError):
    """An Accept header that allows neither of the formats this endpoint answers in."""


class Handler(ABC):
    """One invocation format: recognizes its instances and answers a batch of them at once."""

    name: str

    @abstractmethod
    def accepts(self, instance: dict[str, Any]) -> bool: ...

    @abstractmethod
    def predict(self, sm: ServedModel, instances: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


def _one_id(value: Any, where: str) -> str | int:
    """The single id of one Object2Vec side: ``[42]``, ``["42"]`` or, leniently, ``42``."""
    if type(value) is list and len(value) == 1:  # the usual case, checked first (1,000s per request)
        v = value[0]
        if (type(v) is str and v) or (type(v) is int and INT64_MIN <= v <= INT64_MAX):
            return v
    if isinstance(value, list):
        if len(value) != 1:
            raise InvocationError(f"{where}: expected a list holding one id, got {len(value)} values")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise InvocationError(f"{where}: an id is an integer or a non-empty string, got {value!r}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvocationError(f"{where}: id {value} is out of range")
    return value


def _sides(inst: dict[str, Any], n: int) -> tuple[bool, bool]:
    """Which of in0 and in1 an instance has; a ``label`` (a training line sent as it is) is ignored,
    any other field refused."""
    has0, has1 = "in0" in inst, "in1" in inst
    if not (has0 or has1):
        raise InvocationError(f"instance {n}: expected in0 and/or in1")
    if len(inst) != has0 + has1 + ("label" in inst):
        extra = set(inst) - {"in0", "in1", "label"}
        raise InvocationError(f"instance {n}: unknown field {sorted(extra)[0]!r}")
    return has0, has1


def _tokens(value: Any, where: str, vocab: int) -> list[int]:
    """One side's token sequence for a model trained on JSON Lines pairs: tokens 0..vocab-1."""
    if not isinstance(value, list) or not value:
        raise InvocationError(f"{where}: expected a non-empty list of tokens, got {value!r}")
    out: list[int] = []
    for v in value:
        if isinstance(v, str) and v.isdecimal():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvocationError(f"{where}: a token is a non-negative integer, got {v!r}")
        if v >= vocab:
            raise UnknownIdError(f"{where}: token {v} is outside the model's vocabulary 0..{vocab - 1}")
        out.append(v)
    return out


def _softmax(model: Any) -> bool:
    """An Object2Vec with a softmax head: its pairs are answered with one probability per class."""
    params = getattr(model, "params", None)
    return getattr(params, "output_layer", None) == "softmax" and hasattr(model, "predict_pairs")


def _scores(p: float, kind: str) -> list[float]:
    """One prediction as SageMaker's ``scores``: [P(0), P(1)] from a binary model, else [value]."""
    return [1.0 - p, p] if kind == "binary" else [p]


class Object2VecHandler(Handler):
    """Ids of the model's users and items, one per side; for a model trained on JSON Lines pairs, the
    token sequences of its training file (what SageMaker's Object2Vec takes)."""

    name = "object2vec"

    def accepts(self, instance: dict[str, Any]) -> bool:
        return "in0" in instance or "in1" in instance

    def predict(self, sm: ServedModel, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = sm.model
        layout = getattr(model, "layout", None)
        if isinstance(layout, dict) and layout.get("mode") == "pairs":
            return self._predict_tokens(sm, instances, [int(v) for v in layout["raw_vocab"]])
        pairs: list[int] = []
        users: list[str] = []
        items: list[str] = []
        u_only: list[tuple[int, str | int]] = []
        i_only: list[tuple[int, str | int]] = []
        for n, inst in enumerate(instances):  # one pass: a request may hold thousands of instances
            has0, has1 = _sides(inst, n)
            if has0 and has1:
                pairs.append(n)
                users.append(str(_one_id(inst["in0"], f"instance {n}, in0")))
                items.append(str(_one_id(inst["in1"], f"instance {n}, in1")))
            elif has0:
                u_only.append((n, _one_id(inst["in0"], f"instance {n}, in0")))
            else:
                i_only.append((n, _one_id(inst["in1"], f"instance {n}, in1")))
        out: list[dict[str, Any]] = [{} for _ in instances]
        if pairs:
            kind = sm.kind
            if kind == "ranking":
                raise CapabilityError(f"model {sm.name!r} ranks items but does not score pairs")
            uid, iid = ids_for(model.users, users), ids_for(model.items, items)
            if _softmax(model):  # the class probabilities, as for a model trained on pairs
                from recengine.data.pairs import Pairs

                u = model.users.to_internal(uid).astype(np.int64)[:, None]
                i = model.items.to_internal(iid).astype(np.int64)[:, None]
                ones = np.ones(len(u), dtype=np.int32)
                rows = np.asarray(cast(Any, model).predict_pairs(Pairs(u, ones, i, ones))).tolist()
                for n, row in zip(pairs, rows, strict=True):
                    out[n] = {"scores": row}
            else:
                for n, p in zip(pairs, model.predict(uid, iid).tolist(), strict=True):
                    out[n] = {"scores": _scores(p, kind)}
        for rows, idmap, embed in (
            (u_only, model.users, model.user_embeddings),
            (i_only, model.items, model.item_embeddings),
        ):
            if rows:
                idx = idmap.to_internal(ids_for(idmap, [v for _, v in rows]))
                vectors = np.asarray(embed(), dtype=np.float64)[idx].tolist()
                for (n, _), vec in zip(rows, vectors, strict=True):
                    out[n] = {"embeddings": vec}
        return out

    def _predict_tokens(
        self, sm: ServedModel, instances: list[dict[str, Any]], vocab: list[int]
    ) -> list[dict[str, Any]]:
        """Pairs through the model's pair inference, one side through its encoder (``embed``)."""
        from recengine.data.pairs import Pairs
        from recengine.models.object2vec.tokens import ragged_to_padded

        model: Any = sm.model  # an Object2Vec in pairs mode (predict_pairs, embed)
        pairs: list[tuple[int, list[int], list[int]]] = []
        only: tuple[list[tuple[int, list[int]]], list[tuple[int, list[int]]]] = ([], [])
        for n, inst in enumerate(instances):
            has0, has1 = _sides(inst, n)
            t0 = _tokens(inst["in0"], f"instance {n}, in0", vocab[0]) if has0 else []
            t1 = _tokens(inst["in1"], f"instance {n}, in1", vocab[1]) if has1 else []
            if has0 and has1:
                pairs.append((n, t0, t1))
            else:
                only[0 if has0 else 1].append((n, t0 or t1))
        out: list[dict[str, Any]] = [{} for _ in instances]
        if pairs:
            in0, len0 = ragged_to_padded([t0 for _, t0, _ in pairs], "in0")
            in1, len1 = ragged_to_padded([t1 for _, _, t1 in pairs], "in1")
            scores = np.asarray(
                model.predict_pairs(Pairs(in0, len0.astype(np.int32), in1, len1.astype(np.int32)))
            )
            for (n, _, _), row in zip(pairs, scores.tolist(), strict=True):
                out[n] = {"scores": row if isinstance(row, list) else _scores(row, sm.kind)}
        for side, rows in enumerate(only):
            if rows:
                vectors = np.asarray(model.embed(side, [t for _, t in rows]), dtype=np.float64).tolist()
                for (n, _), vec in zip(rows, vectors, strict=True):
                    out[n] = {"embeddings": vec}
        return out


class FeatureRowsHandler(Handler):
    name = "feature-rows"

    def accepts(self, instance: dict[str, Any]) -> bool:
        return "features" in instance or "data" in instance

    def _pair(self, sm: ServedModel, inst: dict[str, Any], n: int) -> tuple[int, int]:
        n_users, n_items = len(sm.model.users), len(sm.model.items)
        width = n_users + n_items
        if "features" in inst:
            dense = inst["features"]
            if (
                not isinstance(dense, list)
                or len(dense) != width
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in dense)
            ):
                raise InvocationError(f"instance {n}: features must be a list of {width} numbers")
            keys: Any = [j for j, v in enumerate(dense) if v]
        else:
            sparse = inst.get("data")
            feats = sparse.get("features") if isinstance(sparse, dict) else None
            keys = feats.get("keys") if isinstance(feats, dict) else None
            if not isinstance(keys, list) or not all(
                isinstance(k, int) and not isinstance(k, bool) for k in keys
            ):
                raise InvocationError(f"instance {n}: expected data.features.keys, a list of integers")
        user = [k for k in keys if 0 <= k < n_users]
        item = [k - n_users for k in keys if n_users <= k < width]
        if len(user) != 1 or len(item) != 1 or len(keys) != 2:
            raise InvocationError(
                f"instance {n}: expected one-hot features, one of the first {n_users} (user) and one of "
                f"the next {n_items} (item)"
            )
        return user[0], item[0]

    def predict(self, sm: ServedModel, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kind = sm.kind
        if kind == "ranking":
            raise CapabilityError(f"model {sm.name!r} ranks items but does not score feature rows")
        pairs = [self._pair(sm, inst, n) for n, inst in enumerate(instances)]
        u = np.asarray([p[0] for p in pairs], dtype=np.int64)
        i = np.asarray([p[1] for p in pairs], dtype=np.int64)
        scores = sm.model.predict_internal(u, i).tolist()
        if kind == "binary":
            return [{"score": s, "predicted_label": int(s >= 0.5)} for s in scores]
        return [{"score": s} for s in scores]


HANDLERS: list[Handler] = [Object2VecHandler(), FeatureRowsHandler()]


def media_type(content_type: str | None) -> str:
    """``application/json`` or ``application/jsonlines`` from a Content-Type or Accept value."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base in JSONLINES_ALIASES:
        return JSONLINES
    if base == JSON or base.endswith("+json"):
        return JSON
    return base


def response_type(accept: str | None, content_type: str) -> str:
    """The answer's media type: the one of JSON and JSON Lines that ``accept`` prefers (by its q
    values; ``*/*`` and ``application/*`` stand for the request's own type, as does no Accept)."""
    own = media_type(content_type)
    if not accept or not accept.strip():
        return own
    best, best_q = None, 0.0
    for part in accept.split(","):
        kind, *fields = part.split(";")
        q = 1.0
        for f in fields:
            key, _, value = f.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        wanted = media_type(kind)
        offer = own if wanted in ("*/*", "application/*") else wanted if wanted in (JSON, JSONLINES) else None
        if offer is not None and q > best_q:
            best, best_q = offer, q
    if best is None:
        raise NotAcceptableError(f"Accept: {accept.strip()[:200]} allows neither {JSON} nor {JSONLINES}")
    return best


def parse_instances(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The instances of a request body (content type already checked to be JSON or JSON Lines)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvocationError("the body is not UTF-8 text") from None
    if media_type(content_type) == JSONLINES:
        instances: list[Any] = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                obj = _loads(line, f"line {n}")
                # A line may hold one instance or, as the JSON form, {"instances": [...]}.
                instances.extend(_instances_of(obj, f"line {n}") if "instances" in obj else [obj])
    else:
        instances = _instances_of(_loads(text, "body"), "body")
    if not instances:
        raise InvocationError("no instances in the body")
    if len(instances) > MAX_INSTANCES:
        raise InvocationError(f"{len(instances)} instances; at most {MAX_INSTANCES} per request")
    for n, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InvocationError(f"instance {n} is not a JSON object")
    return instances


def _loads(text: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise InvocationError(f"{where}: malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InvocationError(f"{where}: expected a JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _instances_of(obj: dict[str, Any], where: str) -> list[Any]:
    inst = obj.get("instances")
    if not isinstance(inst, list):
        raise InvocationError(f'{where}: expected {{"instances": [...]}}')
    return inst


def transform_file(sm: ServedModel, src: Path, dst: Path) -> int:
    """SageMaker's batch transform: every instance line of ``src`` (JSON Lines, blank lines skipped)
    answered as ``/invocations`` answers it, one line each in ``dst``, written whole or not at all.
    Returns the number of lines answered; a bad line is a DataError naming it."""
    import os

    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with src.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    inst = json.loads(raw)
                except ValueError as e:  # broken JSON or not UTF-8
                    raise DataError(f"not a JSON object ({e})", src, lineno) from None
                if not isinstance(inst, dict):
                    raise DataError(f"an instance is a JSON object, got {type(inst).__name__}", src, lineno)
                rows.append((lineno, inst))
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror})", src) from None
    if not rows:
        raise DataError("no instances: the file holds no JSON object", src)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for start in range(0, len(rows), MAX_INSTANCES):
                batch = rows[start : start + MAX_INSTANCES]
                for answer in _answer_lines(sm, batch, src):
                    out.write(json.dumps(answer, allow_nan=False) + "\n")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def _handler(instance: dict[str, Any], where: str) -> Handler:
    """The first handler that accepts ``instance``; none is an InvocationError starting ``where``."""
    found = next((h for h in HANDLERS if h.accepts(instance)), None)
    if found is None:
        known = ", ".join(h.name for h in HANDLERS)
        raise InvocationError(f"{where}matches no known format ({known})")
    return found


def _answer_lines(
    sm: ServedModel, batch: list[tuple[int, dict[str, Any]]], src: Path
) -> list[dict[str, Any]]:
    """One batch through its handler; when it fails, the first failing line is found and named."""
    instances = [inst for _, inst in batch]
    try:
        return _handler(instances[0], "instance 0: ").predict(sm, instances)
    except RecengineError as batch_error:
        for lineno, inst in batch:  # the slow path, only to say where
            try:
                _handler(inst, "instance 0: ").predict(sm, [inst])
            except RecengineError as e:
                raise DataError(
                    str(e).removeprefix("instance 0: ").removeprefix("instance 0, "), src, lineno
                ) from None
        # every line answers alone: the file mixes the formats, which one request cannot
        raise DataError(f"the lines are not all of one format ({batch_error})", src) from None


def invoke(sm: ServedModel, body: bytes, content_type: str, accept: str | None) -> tuple[bytes, str]:
    """Answer one invocation: the response body and its media type (JSON unless JSON Lines is asked
    for, or the request was JSON Lines and nothing else is asked for)."""
    instances = parse_instances(body, content_type)
    handler = _handler(instances[0], "instance 0 ")
    out_type = response_type(accept, content_type)  # before the work: a 406 costs nothing
    predictions = handler.predict(sm, instances)
    if out_type == JSONLINES:
        text = "".join(json.dumps(p, allow_nan=False) + "\n" for p in predictions)
    else:
        text = json.dumps({"predictions": predictions}, allow_nan=False)
    return text.encode("utf-8"), out_type
