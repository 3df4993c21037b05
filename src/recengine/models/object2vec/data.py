"""Training rows for the head: targets from ratings, a threshold or sampled negatives; JSON Lines pairs.

A softmax head takes class indices 0 .. num_classes-1 and nothing else: a rating of 5 for a
two-class head is an error that says how to get labels (``label_threshold``), never a silent cast.
Binary or class targets move the model onto the scale 0 .. num_classes-1 (0–1 for two classes), so
that ``predict`` gives P(label = 1), or the expected class, instead of a value clipped to 1–5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recengine.data.interactions import Interactions, RatingScale
from recengine.data.pairs import Pairs
from recengine.errors import DataError
from recengine.models._torch_base import _row_weights
from recengine.models._torch_nets import class_values
from recengine.models.object2vec import tokens as tk
from recengine.models.object2vec.params import Object2VecParams
from recengine.models.object2vec.sampling import sample_negatives


def training_arrays(
    train: Interactions, p: Object2VecParams, sessions: npt.NDArray[np.int64] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any], RatingScale | None]:
    """The loop's arrays (user, item, target, label for softmax, per-row L2 weights, each row's
    session id when ``sessions`` are given: a sampled negative has its positive's), what was done
    (rows, negatives), and the scale of the labels when they are not the data's ratings."""
    values = train.values().astype(np.float32)
    info: dict[str, Any] = {"rows": len(train)}
    lt, sc = p.label_threshold, train.scale
    if not train.is_explicit and (lt is not None or p.negative_sampling_rate == 0):
        raise DataError(
            "these interactions have no ratings, so every label would be 1"
            + ("; label_threshold needs ratings" if lt is not None else "")
            + ": set negative_sampling_rate (e.g. 5) to sample unobserved items as negatives"
        )
    if lt is not None and sc is not None and not sc.low <= lt < sc.high:
        raise DataError(
            f"label_threshold={lt:g} is outside the ratings' scale {sc.low:g}..{sc.high:g}, so every label "
            "would be the same; give the ratings themselves (labels 0/1 need no label_threshold)"
        )
    classes = None
    if p.rating_classes:
        classes = rating_class_labels(train, p)
        info["positive_classes"] = positive_classes(train.scale, p).tolist()
    if p.label_threshold is not None:
        values = (values > p.label_threshold).astype(np.float32)
    users, items = train.user.astype(np.int32), train.item.astype(np.int32)
    row_sessions = sessions
    if p.negative_sampling_rate > 0:
        # Labels (a threshold's 0/1, a pairs file's classes) are kept and each positive row gets its
        # negatives; ratings without a threshold, and implicit rows, are all positives.
        labels = sc is not None and sc.low == 0 and (sc.is_binary or p.output_layer == "softmax")
        if p.label_threshold is None and not labels:
            values = np.ones(len(train), dtype=np.float32)
        nu, ni, short, drawn_for = sample_negatives(
            train.user,
            train.item,
            train.n_items,
            p.negative_sampling_rate,
            p.negative_sampling,
            p.seed,
            positive=values > 0,
        )
        users = np.concatenate([users, nu])
        items = np.concatenate([items, ni])
        values = np.concatenate([values, np.zeros(len(nu), dtype=np.float32)])
        info.update(negatives=len(nu), negatives_short=short)
        if sessions is not None:  # a negative is an item not chosen in its positive's session
            row_sessions = np.concatenate([sessions, sessions[drawn_for]])
    learned = classes if classes is not None else values
    if (p.output_layer == "softmax" or p.label_threshold is not None) and len(np.unique(learned)) == 1:
        raise DataError(
            f"every training label is {float(learned[0]):g}, so the model could learn nothing else"
            + ("" if p.negative_sampling_rate else "; set negative_sampling_rate to sample negatives")
        )
    scale = None
    if classes is not None:  # rating classes learned, P(rating > threshold) predicted
        scale = RatingScale(0.0, 1.0, 1.0)
    elif p.output_layer == "softmax":
        check_classes(values, p.num_classes, "training labels")
        scale = RatingScale(0.0, float(p.num_classes - 1), 1.0)
    elif p.label_threshold is not None or p.negative_sampling_rate > 0:
        scale = RatingScale(0.0, 1.0, 1.0)
    arrays: dict[str, np.ndarray] = {"user": users, "item": items, "target": values}
    if row_sessions is not None:  # and 1 / its row count, so that each session is shrunk alike
        arrays["session"] = row_sessions
        counts = np.bincount(arrays["session"])
        arrays["session_weight"] = np.where(
            arrays["session"] > 0, 1.0 / counts[arrays["session"]], 0.0
        ).astype(np.float32)
    if p.output_layer == "softmax":
        arrays["label"] = values.astype(np.int64) if classes is None else classes
    if p.reg > 0 and p.reg_power > 0:  # the shared base's per-row L2 weights
        arrays["user_weight"] = _row_weights(users, train.n_users, p.reg_power)
        arrays["item_weight"] = _row_weights(items, train.n_items, p.reg_power)
    return arrays, info, scale


def positive_classes(scale: RatingScale | None, p: Object2VecParams) -> npt.NDArray[np.float64]:
    """1 for each rating class of ``scale`` above ``label_threshold``, else 0: the worth of each class
    in P(label = 1), which makes the head's expected value the probability of the positive label."""
    values = class_values(scale)
    if len(values) != p.num_classes:
        raise DataError(
            f"rating_classes: the ratings ({scale}) have {len(values)} classes, but num_classes is "
            f"{p.num_classes}; set num_classes={len(values)}"
        )
    assert p.label_threshold is not None  # the params' check
    return (values > p.label_threshold).astype(np.float64)


def rating_class_labels(train: Interactions, p: Object2VecParams) -> npt.NDArray[np.int64]:
    """Class index of each rating on its scale's grid (1–5 stars → 0..4)."""
    scale = train.scale
    positive_classes(scale, p)  # the class count must fit the head
    assert scale is not None and scale.step is not None
    return np.round((train.values() - scale.low) / scale.step).astype(np.int64)


def check_classes(
    labels: npt.NDArray[np.floating], num_classes: int, what: str, pairs: Pairs | None = None
) -> None:
    """softmax labels must be the class indices 0 .. num_classes-1; a bad one of ``pairs`` is named
    by its line."""
    c = num_classes
    bad = (labels < 0) | (labels > c - 1) | (labels != np.round(labels))
    if bool(bad.any()):
        row = int(np.argmax(bad))
        message = (
            f"label {float(labels[row]):g} does not fit output_layer=softmax with num_classes={c} (labels "
            f"must be 0..{c - 1}); for ratings set label_threshold (e.g. 3) or use "
            "output_layer=mean_squared_error"
        )
        if pairs is not None:
            raise pairs.error(row, message)
        raise DataError(f"{what}: {message} (row {row + 1})")


#: The largest token vocabulary of a side trained from JSON Lines (rows of its embedding table).
MAX_VOCAB = 50_000_000


def pairs_training_data(
    data: Pairs, p: Object2VecParams
) -> tuple[Interactions, tk.TokenTable, tk.TokenTable, tuple[int, int]]:
    """JSON Lines pairs → interactions between distinct sequences, the two token tables, raw vocab sizes.

    Each distinct in0 sequence becomes a user and each distinct in1 sequence an item. When every
    sequence of a side is one token, that token is the external id; else the external ids number
    the distinct sequences in sorted order. Repeated pairs keep the last label (the file order).
    """
    if data.labels is None:
        raise DataError("training pairs need a 'label' on every line; these have none")
    ids: list[np.ndarray] = []
    tables: list[tk.TokenTable] = []
    sizes: list[int] = []
    sides = ((data.in0, data.in0_len, p.enc0_vocab_size), (data.in1, data.in1_len, p.enc1_vocab_size))
    for side, (arr, lengths, given) in enumerate(sides):
        size = given if given is not None else int(arr.max()) + 1
        if size > MAX_VOCAB:  # one embedding row per token value up to the largest: renumber first
            raise DataError(
                f"in{side} holds token {size - 1}, which makes a vocabulary of {size:,} rows (over "
                f"{MAX_VOCAB:,}); number the tokens 0..n-1, as SageMaker's Object2Vec expects"
            )
        beyond = (np.arange(arr.shape[1])[None, :] < lengths[:, None]) & (arr >= size)
        if bool(beyond.any()):  # named by the pair's line here; the table below has distinct rows
            k, col = (int(x) for x in np.argwhere(beyond)[0])
            raise data.error(
                k,
                f"in{side} holds token {int(arr[k, col])}, outside the vocabulary 0..{size - 1} "
                f"(enc{side}_vocab_size={size})",
            )
        key = np.concatenate([lengths[:, None].astype(np.int64), arr], axis=1)
        uniq, inverse = np.unique(key, axis=0, return_inverse=True)
        max_len = p.enc0_max_seq_len if side == 0 else p.enc1_max_seq_len
        table, truncated = tk.pad_sequences(uniq[:, 1:], uniq[:, 0], max_len, size, f"in{side}")
        ext = uniq[:, 1] if bool(np.all(lengths == 1)) else np.arange(len(uniq), dtype=np.int64)
        ids.append(ext[inverse.reshape(-1)])
        tables.append(tk.TokenTable(table, truncated=truncated))
        sizes.append(size)
    labels = data.labels.astype(np.float32)
    if p.output_layer == "softmax" and p.label_threshold is None:
        check_classes(labels, p.num_classes, "training pairs", data)
        train = Interactions.from_arrays(
            ids[0], ids[1], labels, scale=RatingScale(0.0, p.num_classes - 1.0, 1.0)
        )
    else:
        train = Interactions.from_arrays(ids[0], ids[1], labels)
    return train, tables[0], tables[1], (sizes[0], sizes[1])
