"""The ``object2vec`` Recommender: SageMaker's Object2Vec pair model on the shared PyTorch base.

Trains from :class:`Interactions` (users and items as token rows: ids plus side tokens from the
data set's metadata) or from SageMaker's JSON Lines pairs (:meth:`Object2Vec.fit_pairs`). Labels are
ratings (``mean_squared_error``) or classes (``softmax``): given as such, made binary by
``label_threshold``, or observed rows against sampled negatives (``negative_sampling_rate``). With
``rating_classes`` a softmax learns the rating classes themselves and predicts P(rating > threshold).
A query may carry its time: ``session_gap`` (a bias per sitting) and ``session_residuals`` (the user's
misses near that time, weighed after training) read it.
The optimizer is chosen by vocabulary size (``optimizer=auto``): dense Adam on small tables, Adam on
sparse gradients where updating every row at each step would be the cost of training.

Fitting, batched prediction, catalog scoring, fold-in of a new user and the artifact state come
from :class:`TorchRecommender`; this module adds the tokens, the labels, pair inference, one-side
embeddings and new items embedded from their content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from recengine.data.dataset import Dataset
from recengine.data.interactions import Interactions
from recengine.data.pairs import Pairs, read_pairs
from recengine.errors import CapabilityError, ConfigError, DataError
from recengine.models._torch_base import PAIR_CHUNK, TorchRecommender, _device
from recengine.models._torch_nets import PairNet, class_values
from recengine.models.base import NO_TIME, Capabilities, NotFittedError
from recengine.models.object2vec import content as cn
from recengine.models.object2vec import tokens as tk
from recengine.models.object2vec.data import pairs_training_data, training_arrays
from recengine.models.object2vec.encoders import NetSpec, Object2VecNet
from recengine.models.object2vec.ensemble import Object2VecEnsemble
from recengine.models.object2vec.members import MemberInputs, MemberJob, plan_processes, train_members
from recengine.models.object2vec.params import Object2VecParams
from recengine.models.object2vec.residuals import (
    Correction,
    Kind,
    ResidualTable,
    SimilarTable,
    cooccurrence_vectors,
)
from recengine.models.object2vec.sessions import Sessions
from recengine.training.data import validation_rows
from recengine.training.device import cpu_count, resolve_device

LAYOUT_KEY = "object2vec.layout"  # JSON of the token layout, stored as uint8 bytes among the arrays
SESSIONS_KEY = "object2vec.sessions."  # the training sessions' user, start and end arrays
RESIDUALS_KEY = "object2vec.residuals."  # the training rows' residuals per (user, second)
SIMILAR_KEY = "object2vec.residuals_similar."  # the same row by row, with the items' vectors


class Object2Vec(TorchRecommender):
    """Object2Vec for (user, item) pairs. Side data comes from :meth:`use_dataset` (or
    :meth:`set_item_features` / :meth:`set_user_features`) before ``fit``; with ``user_tokens`` and
    ``item_tokens`` left at ``auto`` the model uses whatever was given and records it in
    ``history["object2vec"]``."""

    name = "object2vec"
    ParamsModel = Object2VecParams
    capabilities = Capabilities(rating=True, topn=True, new_users=True, new_items=True)
    params: Object2VecParams

    def __init__(self, params: Any = None, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self._item_frame: pl.DataFrame | None = None
        self._user_frame: pl.DataFrame | None = None
        self._pending_pairs: tuple[tk.TokenTable, tk.TokenTable, tuple[int, int]] | None = None
        self.layout: dict[str, Any] = {}
        self.sessions: Sessions | None = None
        self.residuals: tuple[ResidualTable, Correction, SimilarTable | None] | None = None

    # ----- training data ---------------------------------------------------------------------------
    def fit_pairs(
        self,
        pairs: Pairs | str | Path,
        *,
        checkpoint_dir: Path | None = None,
        resume: bool = False,
        progress: bool = False,
    ) -> Self:
        """Fit on SageMaker JSON Lines pairs (a path, or :class:`Pairs` already read).

        Each distinct in0 sequence becomes a user and each distinct in1 sequence an item: when every
        sequence is one token, that token is the external id (``predict([in0], [in1])`` works); else
        the external ids number the distinct sequences in sorted order. Raw tokens must lie in
        ``0 .. enc{0,1}_vocab_size - 1`` (the sizes default to the largest token + 1).
        """
        data = pairs if isinstance(pairs, Pairs) else read_pairs(pairs)
        train, user_table, item_table, sizes = pairs_training_data(data, self.params)
        self._pending_pairs = (user_table, item_table, sizes)
        try:
            return self.fit(train, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)
        finally:
            self._pending_pairs = None

    def _fit(self, train: Interactions) -> None:
        p = self.params
        sessions, row_sessions = None, None
        for name in ("session_gap", "session_residuals"):
            if getattr(p, name) is not None and self._pending_pairs is not None:
                raise ConfigError(
                    f"{name} needs the time of each rating; JSON Lines pairs have none, so leave it out"
                )
        if p.session_residuals is not None and train.timestamp is None:
            raise DataError(
                "session_residuals needs the time of each rating, and these interactions have no "
                "timestamps; leave session_residuals out (or give a timestamp column)"
            )
        if p.session_gap is not None:
            sessions, row_sessions = Sessions.fit(train.user, train.timestamp, p.session_gap)
        arrays, info, scale = training_arrays(train, p, row_sessions)
        if scale is not None:  # binary or class labels: predictions are P(label = 1) or the class
            self._scale = scale
        user_table, item_table, raw = self._tables(train)
        self.layout = self._layout(user_table, item_table, raw)
        self.sessions = sessions
        if sessions is not None:
            self.layout["sessions"] = {"gap": sessions.gap, "rows": sessions.rows}
            info["sessions"] = sessions.rows - 1
        if "positive_classes" in info:
            self.layout["positive_classes"] = info["positive_classes"]
        p = p.resolved(int(self.layout["vocab"][0]) + int(self.layout["vocab"][1]))
        info["optimizer"] = {"optimizer": p.optimizer, "lr": p.lr, "sparse": p.sparse_embeddings}
        spec = self._spec(p)
        n_members = p.n_members(len(arrays["target"]))
        flags = self._history_flags(p, n_members)
        item_flags = self._item_history_flags(p, n_members)
        cap = (p.history_max_len, p.seed)
        history = tk.user_histories(train, *cap) if any(flags) else None
        item_history = tk.item_histories(train, *cap) if any(item_flags) else None
        if any(flags) or any(item_flags):
            self.layout["history"] = {"users": train.n_users, "items": train.n_items}
            info["history_sampled"] = {  # histories longer than the cap, which keep a sample
                side: int(np.count_nonzero(np.bincount(ids, minlength=n) > p.history_max_len)) if on else 0
                for side, ids, n, on in (
                    ("user", train.user, train.n_users, history is not None),
                    ("item", train.item, train.n_items, item_history is not None),
                )
            }
        self.layout["members"] = n_members
        self.layout["history_members"] = flags
        self.layout["item_history_members"] = item_flags
        values = self._class_values()
        shared = MemberInputs(
            user_tokens=user_table.tokens,
            item_tokens=item_table.tokens,
            history=history,
            item_history=item_history,
            values=values,
            center=p.center,
            reg=p.reg,
            val_metric=_val_metric(p, values),
            resume=self.resume,
            identity=self.model_settings(),
            session_reg=p.session_reg,
        )
        cuts = self._residual_rows(train, arrays, p, n_members) if p.session_residuals is not None else []
        processes = self._member_processes(p, n_members, len(arrays["target"]))
        threads = p.threads if processes == 1 else (p.threads or max(1, cpu_count() // processes))
        jobs = [self._member_job(p, j, flags[j], item_flags[j], threads) for j in range(n_members)]
        trained = train_members(jobs, shared, arrays, processes)
        members = [net for net, _ in trained]
        results = [result for _, result in trained]
        info["member_processes"] = processes
        self.net, self._prior = (members[0] if n_members == 1 else Object2VecEnsemble(members)), None
        self.residuals = None
        if p.session_residuals is not None:
            info["session_residuals"] = self._fit_residuals(train, arrays, members, cuts, p)
        info["truncated"] = {"user": user_table.truncated, "item": item_table.truncated}
        info["side_tokens"] = {"user": user_table.kinds, "item": item_table.kinds}
        info["vocab"] = {"user": spec.vocab0, "item": spec.vocab1}
        if n_members > 1:
            keep = ("best_epoch", "best_value", "stopped", "seconds", "refit_from")
            info["members"] = [{k: v for k, v in r.as_dict().items() if k in keep} for r in results]
        self.history = {**results[0].as_dict(), "object2vec": info}
        self.net.eval()

    def _member_job(
        self, p: Object2VecParams, j: int, history_on: bool, item_history_on: bool, threads: int
    ) -> MemberJob:
        """Member j: seed + j; its checkpoints in ``member-j`` (the first member's in the root)."""
        where = self.checkpoint_dir
        if where is not None and j > 0:
            where = Path(where) / f"member-{j}"
        return MemberJob(
            seed=p.seed + j,
            spec=self._spec(p, history=history_on, item_history=item_history_on),
            config=p.model_copy(update={"seed": p.seed + j, "threads": threads}).train_config(),
            checkpoint_dir=where,
            progress=self.progress,
        )

    def _member_processes(self, p: Object2VecParams, n_members: int, n_rows: int) -> int:
        cpu = resolve_device(p.device).type == "cpu"
        if p.member_processes != "auto" and int(p.member_processes) > 1 and not cpu:
            raise ConfigError(
                f"member_processes={p.member_processes} trains members side by side on the CPU; on "
                f"device {p.device!r} leave it at auto (or 1)"
            )
        return plan_processes(p.member_processes, n_members, n_rows, p.threads, cpu, cpu_count())

    # ----- session residuals -----------------------------------------------------------------------
    def _fit_residuals(
        self,
        train: Interactions,
        arrays: dict[str, np.ndarray],
        members: Sequence[Object2VecNet],
        cuts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        p: Object2VecParams,
    ) -> dict[str, Any]:
        """Weigh the session residuals on each member's early-stopping rows near their user's rows
        (``cuts``; window features from the member's own training rows and predictions), then keep the
        whole model's residuals on every row."""
        assert p.session_residuals is not None and train.timestamp is not None  # _fit's checks
        windows, past = tuple(p.session_residuals), p.session_residuals_past
        similar = p.session_residuals_similar
        kind: Kind = "logistic" if self._predicts_probability() else "linear"
        users, items = arrays["user"].astype(np.int64), arrays["item"].astype(np.int64)
        times, target = train.timestamp.astype(np.int64), self._output_targets(train, arrays)
        sessions = arrays.get("session")
        vectors = (
            cooccurrence_vectors(train.user, train.item, train.n_users, train.n_items)
            if similar is not None
            else None
        )
        base, features, labels = [], [], []
        for net, (keep, held) in zip(members, cuts, strict=True):
            pred, resid = self._residuals_of(net, train, users, items, sessions, target)
            table = ResidualTable.build(users[keep], times[keep], resid[keep])
            feats = table.features(users[held], times[held], windows, past)[0]
            if similar is not None and vectors is not None:
                rows = SimilarTable.build(users[keep], times[keep], items[keep], resid[keep], vectors)
                alike = rows.feature(users[held], items[held], times[held], similar, past)
                feats = np.column_stack([feats, alike])
            base.append(pred[held])
            features.append(feats)
            labels.append(target[held])
        x_base, x_feat, y = np.concatenate(base), np.vstack(features), np.concatenate(labels)
        kinds = resid.shape[1]
        correction = Correction.fit(kind, windows, x_base, x_feat, y, past, similar, kinds)
        resid = self._residuals_of(self._net(), train, users, items, sessions, target)[1]
        self.residuals = (
            ResidualTable.build(users, times, resid),
            correction,
            None if vectors is None else SimilarTable.build(users, times, items, resid, vectors),
        )
        self.layout["residuals"] = correction.as_dict()
        before, after = x_base, correction.apply(x_base, x_feat)
        return {
            **correction.as_dict(),
            "rows": len(y),
            "fit_" + ("log_loss" if kind == "logistic" else "rmse"): [  # on the rows it was fitted on
                round(_fit_error(kind, y, v), 6) for v in (before, after)
            ],
        }

    def _residuals_of(
        self,
        net: PairNet,
        train: Interactions,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        sessions: npt.NDArray[np.int64] | None,
        target: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``net``'s predictions of the training rows and their residuals, one column per kind: the
        label's, and with rating classes also the rating's against the expected rating (how far off
        in stars, which the label's side of the threshold does not tell)."""
        pred = self._clip(self._predict_with(net, users, items, sessions))
        kinds = [target - pred]
        if self._residual_kinds() == 2:
            stars = class_values(train.scale)
            kinds.append(train.values() - self._predict_with(net, users, items, sessions, stars))
        return pred, np.column_stack(kinds)

    def _residual_kinds(self) -> int:
        """The label's residuals, and with rating classes the stars' as well."""
        return 2 if self.params.rating_classes else 1

    def _residual_rows(
        self, train: Interactions, arrays: dict[str, np.ndarray], p: Object2VecParams, n_members: int
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """Per member, before any network trains: the rows it trains on and its early-stopping rows
        (the loop's cut) with training rows of their user within the widest window, which the weights
        are fitted on (the others keep the output). Refused when they are too few to weigh the windows
        on or all of one label, which the data alone decides."""
        assert p.session_residuals is not None and train.timestamp is not None  # _fit's checks
        users, times = arrays["user"].astype(np.int64), train.timestamp.astype(np.int64)
        target, n, widest = self._output_targets(train, arrays), len(users), (max(p.session_residuals),)
        cuts = []
        for j in range(n_members):
            keep, held = validation_rows(n, p.val_fraction, p.seed + j)
            table = ResidualTable.build(users[keep], times[keep], np.zeros(len(keep)))
            cuts.append(
                (keep, held[table.features(users[held], times[held], widest, p.session_residuals_past)[1]])
            )
        near = target[np.concatenate([held for _, held in cuts])]
        n_features = self._residual_kinds() * (
            len(p.session_residuals) + (p.session_residuals_similar is not None)
        )
        if len(near) < 10 * (n_features + 2):
            raise DataError(
                f"session_residuals: {len(near)} early-stopping rows have training rows of their user "
                f"within {widest[0]} s, too few to weigh {n_features} residual feature(s) on; raise "
                "val_fraction or widen the windows"
            )
        if self._predicts_probability() and len(np.unique(near > 0.5)) == 1:
            raise DataError(
                f"session_residuals: every early-stopping row near its user's rows has label "
                f"{int(near[0] > 0.5)}, so there is nothing to weigh the residuals by; leave "
                "session_residuals out or raise val_fraction"
            )
        return cuts

    def _predicts_probability(self) -> bool:
        """Whether predictions are P(label = 1) (labels from a threshold, rating classes, 0/1 data),
        corrected on the logit scale, rather than values (ratings, the expected class)."""
        scale = self.scale
        return not self.predicts_ratings or (scale is not None and scale.is_binary)

    def model_settings(self) -> dict[str, Any]:
        """The base's, less the session residuals' settings: weighed after the networks train, they do
        not change them, so a resumed fit may weigh other windows."""
        later = ("session_residuals", "session_residuals_past", "session_residuals_similar")
        return {k: v for k, v in super().model_settings().items() if k not in later}

    def _output_targets(self, train: Interactions, arrays: dict[str, np.ndarray]) -> npt.NDArray[np.float64]:
        """Each training row's target on the predictions' scale (the label that P is of, for rating
        classes)."""
        if self.params.rating_classes:
            return (train.values() > float(self.params.label_threshold or 0.0)).astype(np.float64)
        return arrays["target"].astype(np.float64)

    def _clip(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.scale.clip(values) if self.scale is not None else values

    # ----- token tables ----------------------------------------------------------------------------
    def _tables(self, train: Interactions) -> tuple[tk.TokenTable, tk.TokenTable, tuple[int, int] | None]:
        p = self.params
        if self._pending_pairs is not None:
            return self._pending_pairs
        given = [f"enc{k}_vocab_size" for k in (0, 1) if getattr(p, f"enc{k}_vocab_size") is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)} applies to training from JSON Lines pairs (raw token ids); training "
                "on interactions builds the vocabularies from the ids and side tokens, so leave it out"
            )
        user_rows = np.bincount(train.user, minlength=train.n_users) > 0
        item_rows = np.bincount(train.item, minlength=train.n_items) > 0
        ukinds = tk.resolve_kinds(
            p.user_tokens, tk.available_user_kinds(self._user_frame), "user", tk.USER_KINDS
        )
        ikinds = tk.resolve_kinds(
            p.item_tokens, tk.available_item_kinds(self._item_frame), "item", tk.ITEM_KINDS
        )
        ucontent = icontent = None
        if ukinds and self._user_frame is not None:
            ucontent = tk.align_keys(tk.user_content(self._user_frame, ukinds), train.users)
        if ikinds and self._item_frame is not None:
            icontent = tk.align_keys(tk.item_content(self._item_frame, ikinds, p.year_bucket), train.items)
        user_table = tk.build_table(train.users, ucontent, ukinds, p.enc0_max_seq_len, user_rows, "user")
        item_table = tk.build_table(
            train.items, icontent, ikinds, p.enc1_max_seq_len, item_rows, "item", {"word:": p.title_min_count}
        )
        return user_table, item_table, None

    def _layout(
        self, user: tk.TokenTable, item: tk.TokenTable, raw: tuple[int, int] | None
    ) -> dict[str, Any]:
        """What inference needs besides the weights: vocabularies, kinds, the raw token spaces."""
        if raw is not None:
            return {
                "mode": "pairs",
                "raw_vocab": list(raw),
                "vocab": [raw[0] + tk.N_RESERVED, raw[1] + tk.N_RESERVED],
                "shared_vocab": True,  # tied tables: a token is one row on both sides (files without it: two)
            }
        return {
            "mode": "interactions",
            "vocab": [user.vocab_size, item.vocab_size],
            "user_vocab": user.side_vocab,
            "item_vocab": item.side_vocab,
            "user_kinds": user.kinds,
            "item_kinds": item.kinds,
        }

    def _history_flags(self, p: Object2VecParams, n_members: int) -> list[bool]:
        """Which members read the user's history: none, all, or every second one (``mixed``)."""
        return self._member_flags("user_history", p.user_history, n_members, step=1)

    def _item_history_flags(self, p: Object2VecParams, n_members: int) -> list[bool]:
        """Which members read the items' histories: none, all, or half (``mixed``); beside a mixed
        user history the halves cross, so that four members cover each combination once."""
        step = 2 if p.user_history == "mixed" and n_members >= 4 else 1
        return self._member_flags("item_history", p.item_history, n_members, step)

    def _member_flags(self, name: str, setting: str, n_members: int, step: int) -> list[bool]:
        """``off``: no member, ``on``: every one, ``mixed``: alternate runs of ``step`` members from
        the second run on. JSON Lines pairs have token sequences, not histories: only ``on`` is an error."""
        if self.layout["mode"] != "interactions":
            if setting == "on":
                side = name.removesuffix("_history")
                raise ConfigError(
                    f"{name}=on needs {side}s with histories; training from JSON Lines pairs has "
                    f"token sequences instead, so use {name}=off (or mixed, which is off here)"
                )
            return [False] * n_members
        if setting == "mixed":
            return [(j // step) % 2 == 1 for j in range(n_members)]
        return [setting == "on"] * n_members

    def _spec(
        self, params: Object2VecParams | None = None, history: bool = False, item_history: bool = False
    ) -> NetSpec:
        p = self.params if params is None else params
        head = p.num_classes if p.output_layer == "softmax" else 1
        table = self.layout.get("history") or {}
        return NetSpec(
            vocab0=int(self.layout["vocab"][0]),
            vocab1=int(self.layout["vocab"][1]),
            networks=(p.enc0_network, p.enc1_network),
            token_dims=(p.enc0_token_embedding_dim, p.enc1_token_embedding_dim),
            enc_dim=p.enc_dim,
            layers=(p.layers(0), p.layers(1)),
            filter_widths=(p.enc0_cnn_filter_width, p.enc1_cnn_filter_width),
            tied_embedding=p.tied_token_embedding_weight,
            shared_encoder=p.shared_encoder,
            comparator=tuple(p.comparator_list),
            mlp_layers=p.mlp_layers,
            mlp_dim=p.mlp_dim,
            activation=p.mlp_activation,
            dropout=p.dropout,
            out_dim=head,
            init_std=p.init_std,
            id_dropout=(p.id_dropout, p.id_dropout) if self.layout["mode"] == "interactions" else (0.0, 0.0),
            sparse=p.sparse_embeddings,
            bias=p.bias_terms,
            history=history,
            history_users=int(table.get("users", 0)),
            history_items=int(table.get("items", 0)),
            item_history=item_history,
            shared_vocab=bool(self.layout.get("shared_vocab", False)),
            sessions=int((self.layout.get("sessions") or {}).get("rows", 0)),
        )

    @property
    def reads_time(self) -> bool:
        return self.sessions is not None or self.residuals is not None

    @property
    def predicts_ratings(self) -> bool:
        """Not with ``label_threshold`` or negative sampling: those predict P(label = 1)."""
        return self.params.label_threshold is None and self.params.negative_sampling_rate == 0

    def learns_labels_from_ratings(self, threshold: float) -> bool:
        """With ``label_threshold`` the model makes its labels from ratings (and with ``rating_classes``
        learns the rating classes themselves), so it fits on the ratings, at the task's threshold."""
        own = self.params.label_threshold
        if own is None:
            return False
        if own != threshold:
            raise ConfigError(
                f"{self.name}: label_threshold={own:g}, but the task's labels are rating > {threshold:g}; "
                f"set label_threshold={threshold:g}"
            )
        return True

    def _class_values(self) -> npt.NDArray[np.float64] | None:
        """Class c is worth c: the prediction is the expected class, P(label = 1) for two classes.
        With ``rating_classes`` a class is worth 1 when its rating is above the threshold, so the
        expected value is P(rating > label_threshold)."""
        if self.params.output_layer != "softmax":
            return None
        if self.params.rating_classes:
            return np.asarray(self.layout["positive_classes"], dtype=np.float64)
        return np.arange(self.params.num_classes, dtype=np.float64)

    def _fold_in(
        self, items: npt.NDArray[np.int64], ratings: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """As the base does it, on the model's own labels. A history on the scale of the ratings the
        model made its labels of (stars, for one that predicts P(rating > 3)) is turned into them
        first: above ``label_threshold`` is 1, and with negative sampling every rated item is; a
        rating-class head is fitted to the rating classes themselves. A history of 0/1 labels (a model
        saved before its input scale was, or fitted on labels) reaches a rating-class head through
        P(label = 1)."""
        p = self.params
        input_scale = self.input_scale
        labels_given = input_scale == self.scale
        if not labels_given and not p.rating_classes:
            if p.label_threshold is not None:
                ratings = (ratings > p.label_threshold).astype(np.float64)
            elif p.negative_sampling_rate > 0:
                ratings = np.ones_like(ratings)
        if not p.rating_classes or len(items) == 0:
            return super()._fold_in(items, ratings)
        net = self._o2v().eval()
        dev = _device(net)
        prior = self._user_prior().detach().clone()
        positive = torch.from_numpy(np.asarray(self.layout["positive_classes"], dtype=np.float32)).to(dev)
        with torch.no_grad():
            iv = net.item_side(torch.from_numpy(items).to(dev))
        if labels_given or input_scale is None or input_scale.step is None:
            target = torch.from_numpy(ratings.astype(np.float32)).to(dev)

            def loss_of(out: torch.Tensor) -> torch.Tensor:
                p1 = (torch.softmax(out, dim=-1) @ positive).clamp(1e-6, 1 - 1e-6)
                return torch.nn.functional.binary_cross_entropy(p1, target, reduction="sum")

        else:
            grid = np.round((ratings - input_scale.low) / input_scale.step).astype(np.int64)
            classes = torch.from_numpy(grid).to(dev)

            def loss_of(out: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.cross_entropy(out, classes, reduction="sum")

        v = prior.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([v], lr=1.0, max_iter=p.fold_in_steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            loss = loss_of(net.combine(v.expand(len(items), -1), iv))
            loss = loss + p.fold_in_reg * torch.sum((v - prior) ** 2)
            (grad,) = torch.autograd.grad(loss, v)  # weights stay untouched
            v.grad = grad
            return loss.detach()

        opt.step(closure)
        return v.detach().double().cpu().numpy()

    def _o2v(self) -> Object2VecNet | Object2VecEnsemble:
        net = self._net()
        if not isinstance(net, Object2VecNet | Object2VecEnsemble):  # pragma: no cover - only these
            raise TypeError("object2vec holds a network of another model")
        return net

    def _build_net(self, n_users: int, n_items: int, n_genres: int) -> Object2VecNet:
        raise NotImplementedError("object2vec builds its network from its token layout")

    # ----- inference on pairs and on one side ------------------------------------------------------
    def _side_tokens(
        self, side: int, arr: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
    ) -> torch.Tensor:
        """Padded token sequences of the caller's space → the model's token ids for side ``side``.

        Pairs mode: raw tokens of the JSON Lines space. Interactions mode: one internal user (side 0)
        or item (side 1) id per sequence, as :func:`recengine.data.pairs.interactions_to_pairs` writes.
        """
        net = self._o2v()
        max_len = self.params.enc0_max_seq_len if side == 0 else self.params.enc1_max_seq_len
        field = f"in{side}"
        if self.layout.get("mode") == "pairs":
            table, _ = tk.pad_sequences(arr, lengths, max_len, int(self.layout["raw_vocab"][side]), field)
            return torch.from_numpy(table).to(_device(net))
        n = len(self.users) if side == 0 else len(self.items)
        first = arr[:, 0] if arr.size else np.zeros(len(arr), dtype=np.int64)
        bad = (lengths != 1) | (first < 0) | (first >= n)
        if bool(bad.any()):
            k = int(np.argmax(bad))
            raise DataError(
                f"{field} of row {k} is {arr[k, : lengths[k]].tolist()}: a model trained on interactions "
                f"takes one internal {'user' if side == 0 else 'item'} id (0..{n - 1}) per sequence"
            )
        idx = torch.from_numpy(np.ascontiguousarray(first, dtype=np.int64)).to(_device(net))
        return net.get_buffer("user_tokens" if side == 0 else "item_tokens")[idx]

    def embed(
        self, side: int, seqs: Sequence[Sequence[int]] | npt.NDArray[np.integer]
    ) -> npt.NDArray[np.float32]:
        """One side only → its encoder's output, (n, enc_dim), as Object2Vec's inference does; the
        tokens are read as :meth:`predict_pairs` reads them (internal ids for a model fitted on
        interactions)."""
        if side not in (0, 1):
            raise ValueError("side must be 0 (in0, users) or 1 (in1, items)")
        net = self._o2v().eval()
        arr, lengths = tk.ragged_to_padded(seqs, f"in{side}")
        with torch.inference_mode():
            out = net.vectors(net.encode(side, self._side_tokens(side, arr, lengths)))
        return out.cpu().numpy().astype(np.float32)

    def predict_pairs(self, pairs: Pairs | str | Path) -> npt.NDArray[np.float64]:
        """Scores of pairs: (n,) predicted ratings for a regression head, (n, num_classes) class
        probabilities ([p0, p1]) for a softmax head. Labels in the input are ignored.

        A model fitted from JSON Lines reads the raw tokens it was trained on. A model fitted on
        interactions reads one *internal* id a side, as :func:`~recengine.data.pairs.interactions_to_pairs`
        writes them (``model.users.to_internal(ids)``); for the data set's own ids use
        ``predict`` or ``recengine predict``, which map them as the SageMaker endpoint does."""
        data = pairs if isinstance(pairs, Pairs) else read_pairs(pairs)
        net = self._o2v().eval()
        if len(data) == 0:  # nothing to score: the shape the answers would have
            p = self.params
            width = 2 if p.rating_classes else p.num_classes if p.output_layer == "softmax" else 0
            return np.zeros((0, width) if width else (0,), dtype=np.float64)
        tokens0 = self._side_tokens(0, data.in0, data.in0_len.astype(np.int64))
        tokens1 = self._side_tokens(1, data.in1, data.in1_len.astype(np.int64))
        parts = []
        with torch.inference_mode():
            for s in range(0, len(data), PAIR_CHUNK):
                out = net.combine(
                    net.encode(0, tokens0[s : s + PAIR_CHUNK]), net.encode(1, tokens1[s : s + PAIR_CHUNK])
                )
                parts.append(
                    torch.softmax(out, dim=-1) if self.params.output_layer == "softmax" else out[:, 0]
                )
        pred = torch.cat(parts).double().cpu().numpy()
        if self.params.rating_classes:  # [P(label = 0), P(label = 1)], as a two-class head gives
            p1 = pred @ np.asarray(self.layout["positive_classes"], dtype=np.float64)
            return np.stack([1.0 - p1, p1], axis=1)
        if self.params.output_layer == "softmax":
            return pred
        return self.scale.clip(pred) if self.scale is not None else pred

    def _predict_at(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], timestamps: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """With sessions, each pair is predicted in the user's training session its time falls in (as
        without sessions where it falls in none); with session residuals, the user's misses near its
        time are weighed in. Without either the times change nothing."""
        if self.sessions is None:
            out = self._predict(users, items)
        else:
            out = self._predict(users, items, self.sessions.lookup(users, timestamps))
        if self.residuals is not None:  # a query with a time also reads the user's misses near it
            table, correction, rows = self.residuals
            timed = np.flatnonzero(timestamps != NO_TIME)
            feats, near = table.features(users[timed], timestamps[timed], correction.windows, correction.past)
            at = timed[near]
            feats = feats[near]
            if rows is not None and correction.similar is not None:
                reach = (correction.similar, correction.past)
                feats = np.column_stack([feats, rows.feature(users[at], items[at], timestamps[at], *reach)])
            out[at] = correction.apply(self._clip(out[at]), feats)
        return out

    # ----- embeddings ------------------------------------------------------------------------------
    def _side_all(self, side: int) -> npt.NDArray[np.float32]:
        net = self._o2v().eval()
        n = len(self.users) if side == 0 else len(self.items)
        with torch.inference_mode():
            ids = torch.arange(n, device=_device(net))
            out = net.vectors(net.user_side(ids) if side == 0 else net.item_side(ids))
        return out.cpu().numpy().astype(np.float32)

    def user_embeddings(self) -> npt.NDArray[np.float32]:
        """enc0's output for every user (what the comparator reads; the bias term is left out)."""
        return self._side_all(0)

    def item_embeddings(self) -> npt.NDArray[np.float32]:
        """enc1's output for every item; :meth:`similar_items` ranks by their cosine."""
        return self._side_all(1)

    # ----- state -----------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        from recengine.training.state import module_state_arrays

        arrays = module_state_arrays(self._net())
        arrays[LAYOUT_KEY] = np.frombuffer(json.dumps(self.layout).encode(), dtype=np.uint8).copy()
        if self.sessions is not None:
            arrays.update({SESSIONS_KEY + k: v for k, v in self.sessions.arrays().items()})
        if self.residuals is not None:
            arrays.update({RESIDUALS_KEY + k: v for k, v in self.residuals[0].arrays().items()})
            if self.residuals[2] is not None:
                arrays.update({SIMILAR_KEY + k: v for k, v in self.residuals[2].arrays().items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        from recengine.training.state import load_module_state

        arrays = dict(arrays)
        raw = arrays.pop(LAYOUT_KEY, None)
        if raw is None:
            raise DataError(f"object2vec state lacks its token layout ({LAYOUT_KEY})")
        self.layout = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode())
        stored = {
            k.removeprefix(SESSIONS_KEY): arrays.pop(k) for k in list(arrays) if k.startswith(SESSIONS_KEY)
        }
        self.sessions = None
        if self.layout.get("sessions"):
            info = self.layout["sessions"]
            if not stored:
                raise DataError("object2vec state names sessions but lacks their arrays")
            self.sessions = Sessions.from_arrays(int(info["gap"]), stored)
            if self.sessions.rows != int(info["rows"]):
                held, named = self.sessions.rows - 1, int(info["rows"]) - 1
                raise DataError(f"object2vec state holds {held} sessions, its layout names {named}")
        residuals = {
            k.removeprefix(RESIDUALS_KEY): arrays.pop(k) for k in list(arrays) if k.startswith(RESIDUALS_KEY)
        }
        similar = {
            k.removeprefix(SIMILAR_KEY): arrays.pop(k) for k in list(arrays) if k.startswith(SIMILAR_KEY)
        }
        self.residuals = None
        if self.layout.get("residuals"):
            if not residuals:
                raise DataError("object2vec state names session residuals but lacks their arrays")
            correction = Correction.from_dict(self.layout["residuals"])
            if correction.similar is not None and not similar:
                raise DataError("object2vec state names similar session residuals but lacks their arrays")
            table = ResidualTable.from_arrays(residuals)
            rows = SimilarTable.from_arrays(similar) if correction.similar is not None else None
            kinds_held = {table.total.shape[1]} | ({rows.residual.shape[1]} if rows is not None else set())
            if kinds_held != {correction.kinds}:
                raise DataError(
                    f"object2vec state holds session residuals of {sorted(kinds_held)} kind(s), its weights "
                    f"are for {correction.kinds}"
                )
            self.residuals = (table, correction, rows)
        prefix = "members.0." if int(self.layout.get("members", 1)) > 1 else ""
        users, items = arrays.get(f"{prefix}user_tokens"), arrays.get(f"{prefix}item_tokens")
        if users is None or items is None:
            raise DataError("object2vec state lacks its token tables")
        n_members = int(self.layout.get("members", 1))
        flags = [bool(f) for f in self.layout.get("history_members", [False] * n_members)]
        item_flags = [bool(f) for f in self.layout.get("item_history_members", [False] * n_members)]
        if len(flags) != n_members or len(item_flags) != n_members:
            raise DataError(f"object2vec layout names histories for other than its {n_members} members")
        # A history all members share is stored once, under the first member that reads it.
        holder = [f"members.{flags.index(True)}." if n_members > 1 and any(flags) else ""] * 2
        if n_members > 1 and any(item_flags):
            holder[1] = f"members.{item_flags.index(True)}."
        members = []
        for j, (flag, item_flag) in enumerate(zip(flags, item_flags, strict=True)):
            where = f"members.{j}." if n_members > 1 else ""
            history = item_history = None
            if flag:
                history = _csr(arrays, f"{where}history_offsets", f"{where}history_items") or _csr(
                    arrays, f"{holder[0]}history_offsets", f"{holder[0]}history_items"
                )
                if history is None:
                    raise DataError(f"object2vec state lacks the user history of member {j}")
            if item_flag:
                item_history = _csr(
                    arrays, f"{where}item_history_offsets", f"{where}item_history_users"
                ) or _csr(arrays, f"{holder[1]}item_history_offsets", f"{holder[1]}item_history_users")
                if item_history is None:
                    raise DataError(f"object2vec state lacks the item history of member {j}")
            spec = self._spec(history=flag, item_history=item_flag)
            members.append(
                Object2VecNet(
                    spec,
                    torch.from_numpy(users.copy()),
                    torch.from_numpy(items.copy()),
                    history,
                    item_history,
                )
            )
        net = members[0] if n_members == 1 else Object2VecEnsemble(members)
        load_module_state(net, arrays)
        self.net, self._prior = net.eval(), None

    # ----- side data -------------------------------------------------------------------------------
    def use_dataset(self, ds: Dataset) -> Self:
        """Take item (genres, title, year) and user (age, gender, occupation) features from ``ds``."""
        self._item_frame = ds.items
        self._user_frame = ds.users
        return self

    def set_item_features(
        self,
        items: npt.ArrayLike,
        genres: Sequence[Iterable[str] | None] | None = None,
        *,
        titles: Sequence[str | None] | None = None,
        years: Sequence[int | float | None] | None = None,
    ) -> None:
        """Item features by external id (any of genres, titles, years), before ``fit``."""
        self._item_frame = cn.item_frame(items, genres, titles, years)

    def set_user_features(
        self,
        users: npt.ArrayLike,
        *,
        ages: Sequence[int | None] | None = None,
        genders: Sequence[str | None] | None = None,
        occupations: Sequence[str | None] | None = None,
    ) -> None:
        """User features by external id (any of ages, genders, occupations), before ``fit``."""
        self._user_frame = cn.user_frame(users, ages, genders, occupations)

    # ----- new items from content ------------------------------------------------------------------
    def new_item_vectors(
        self,
        *,
        genres: Sequence[Iterable[str] | None] | None = None,
        titles: Sequence[str | None] | None = None,
        years: Sequence[int | float | None] | None = None,
    ) -> npt.NDArray[np.float32]:
        """enc1's side vectors of items nobody has rated, from their content alone: (n, enc_dim), or
        (n, enc_dim + 1) with ``bias_terms`` (the last column is the item's bias from its tokens).

        Content tokens unknown to the training vocabulary are left out with a warning; an item with
        no known token at all gets the UNK embedding (the model's "any item").
        """
        self._check_content()
        net = self._o2v().eval()
        rows, _ = cn.new_item_tokens(
            self.layout, self.params.enc1_max_seq_len, self.params.year_bucket, genres, titles, years
        )
        with torch.inference_mode():
            out = net.encode(1, torch.from_numpy(rows).to(_device(net)))
        return out.cpu().numpy().astype(np.float32)

    def predict_new_items(self, users: npt.ArrayLike, vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predictions (ratings, or P(label = 1)) of known external users for new items given by
        :meth:`new_item_vectors`: shape (len(users), len(vectors))."""
        net = self._o2v().eval()
        dev = _device(net)
        uidx = torch.from_numpy(self.users.to_internal(users).astype(np.int64)).to(dev)
        iv = torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=dev)
        if iv.ndim != 2 or iv.shape[1] != net.side_dim:
            raise ValueError(f"vectors must have shape (n, {net.side_dim}) as new_item_vectors gives them")
        with torch.inference_mode():
            out = self._grid(net.user_side(uidx), iv, self._values_tensor(dev)).double().cpu().numpy()
        return self.scale.clip(out) if self.scale is not None else out

    def similar_to_vectors(
        self, vectors: npt.ArrayLike, k: int = 10
    ) -> tuple[np.ndarray, npt.NDArray[np.float32]]:
        """The ``k`` known items nearest each vector (a new item's, or a row of ``item_embeddings``) by
        cosine similarity."""
        from recengine.evaluation.topn import topk

        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        net = self._o2v()
        emb = self.item_embeddings()
        given = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if given.ndim == 2 and given.shape[1] == net.side_dim:  # as new_item_vectors gives them
            q = net.vectors(torch.as_tensor(given)).numpy()
        elif given.ndim == 2 and given.shape[1] == emb.shape[1]:  # rows of item_embeddings
            q = given
        else:
            raise ValueError(
                f"vectors must have shape (n, {net.side_dim}) as new_item_vectors gives them, or "
                f"(n, {emb.shape[1]}) as item_embeddings; got {given.shape}"
            )
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        qu = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        idx, top = topk(qu @ unit.T, k, copy=False)
        return self._external_items(idx), top

    def fitted_capabilities(self) -> Capabilities:
        """New items only where the fit had item content to embed them from."""
        try:
            self._check_content()
        except (CapabilityError, NotFittedError):
            return replace(self.capabilities, new_items=False)
        return self.capabilities

    def _check_content(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name}: call fit() first")
        if self.layout.get("mode") != "interactions":
            raise CapabilityError(
                f"{self.name}: a model trained on JSON Lines pairs has no content vocabulary"
            )
        if not self.layout.get("item_kinds"):
            raise CapabilityError(
                f"{self.name} was trained without item side tokens, so it cannot embed an item from "
                "its content; fit with item features (use_dataset) and item_tokens other than []"
            )


def _fit_error(kind: str, y: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> float:
    if kind == "logistic":
        q = np.clip(v, 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    return float(np.sqrt(np.mean((y - v) ** 2)))


def _val_metric(p: Object2VecParams, values: npt.NDArray[np.float64] | None) -> str | None:
    """Early stopping's metric: a softmax over two classes or over rating classes predicts
    P(label = 1), judged by log loss; over more classes, by cross-entropy (the mean class would rank
    a wrong but middling answer above a right one); a regression head keeps RMSE (None)."""
    if values is None:
        return None
    return "log_loss" if len(values) == 2 or p.rating_classes else "cross_entropy"


def _csr(
    arrays: dict[str, np.ndarray], offsets: str, members: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A saved history's two arrays as tensors, or None when either is missing."""
    a, b = arrays.get(offsets), arrays.get(members)
    if a is None or b is None:
        return None
    return torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
