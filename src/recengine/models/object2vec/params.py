"""Object2Vec hyperparameters: SageMaker's names where SageMaker has the setting, presets, checks.

The fields use SageMaker's Object2Vec names (``enc_dim``, ``enc0_network``, ``mlp_layers``, ...), so a
configuration written for the seed notebook reads as it is. SageMaker's names for settings of the
shared training loop (``mini_batch_size``, ``learning_rate``, ``early_stopping_patience``,
``early_stopping_tolerance``) and the shorthand ``token_embedding_dim`` (both sides) are translated
before validation (the tolerance is the loop's: a gain of the validation metric, RMSE or log loss,
over the last epoch that made one, where SageMaker counts a drop of mean squared error between
consecutive epochs); any other name, SageMaker's distributed-training knobs (``_kvstore``,
``_num_gpus``) and pretrained-embedding files included, is rejected by name.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recengine.models._torch_base import TorchRatingParams
from recengine.training.config import LR_MAX, TrainConfig

Network = Literal["pooled_embedding", "hcnn", "bilstm"]
ComparatorOp = Literal["hadamard", "concat", "abs_diff"]
ALL_COMPARATORS: tuple[ComparatorOp, ...] = ("hadamard", "concat", "abs_diff")
ItemKind = Literal["genres", "title", "year"]
UserKind = Literal["age", "gender", "occupation"]

#: ``members=auto``: this many networks on data sets of up to AUTO_MEMBERS_ROWS training rows.
AUTO_MEMBERS, AUTO_MEMBERS_ROWS = 4, 1_000_000

#: SageMaker name → our name, for settings of the shared loop.
SAGEMAKER_ALIASES = {
    "mini_batch_size": "batch_size",
    "learning_rate": "lr",
    "early_stopping_patience": "patience",
    "early_stopping_tolerance": "tolerance",
}
_CLUSTER = "a setting of SageMaker's training cluster; here one machine trains"
_PRETRAINED = "pretrained token embeddings are not loaded; tokens start from a seeded random table"
#: SageMaker Object2Vec hyperparameters this implementation does not take, with why.
SAGEMAKER_UNSUPPORTED = {
    "_kvstore": _CLUSTER,
    "_num_gpus": _CLUSTER,
    "_num_kv_servers": _CLUSTER,
    "token_embedding_storage_type": "tables are dense; optimizer=auto gives large vocabularies sparse "
    "gradients (row-sparse Adam)",
    "enc0_pretrained_embedding_file": _PRETRAINED,
    "enc1_pretrained_embedding_file": _PRETRAINED,
    "enc0_freeze_pretrained_embedding": _PRETRAINED,
    "enc1_freeze_pretrained_embedding": _PRETRAINED,
    "enc0_vocab_file": "tokens are integers already; there is no vocabulary file to map words",
    "enc1_vocab_file": "tokens are integers already; there is no vocabulary file to map words",
    "bucket_width": "sequences are padded to the longest of their batch, not bucketed",
}

#: The seed notebook's regression run (``object2vec_movie_recommendation``): pooled embeddings of the
#: user and movie ids (300-d tokens, enc_dim 1024), one tanh MLP layer of 256, squared error, Adam
#: 0.001, batch 64, 20 epochs, early stopping patience 3 / tolerance 0.01; no side tokens, no
#: centering, no weight decay, no dropout. The notebook validated on the test file; here a seeded
#: 5% of the training rows stands in for it.
SEED_LAB2: dict[str, Any] = {
    "enc0_network": "pooled_embedding",
    "enc1_network": "pooled_embedding",
    "enc0_token_embedding_dim": 300,
    "enc1_token_embedding_dim": 300,
    "enc_dim": 1024,
    "enc0_max_seq_len": 1,
    "enc1_max_seq_len": 1,
    "comparator_list": ["hadamard", "concat", "abs_diff"],
    "mlp_layers": 1,
    "mlp_dim": 256,
    "mlp_activation": "tanh",
    "output_layer": "mean_squared_error",
    "optimizer": "adam",
    "lr": 0.001,
    "weight_decay": 0.0,
    "dropout": 0.0,
    "batch_size": 64,
    "epochs": 20,
    "patience": 3,
    "tolerance": 0.01,
    "lr_schedule": "constant",
    "user_tokens": [],
    "item_tokens": [],
    "id_dropout": 0.0,
    "center": False,
    "bias_terms": False,
    "reg": 0.0,
    "reg_power": 0.0,
    "init_std": 0.05,
    "members": 1,
    "user_history": "off",
    "item_history": "off",
}
#: The notebook's classifier: enc_dim 2048, MLP 1024 ReLU, softmax over 2 classes, batch 2048.
SEED_LAB2_CLASSIFIER: dict[str, Any] = {
    **SEED_LAB2,
    "enc_dim": 2048,
    "mlp_dim": 1024,
    "mlp_activation": "relu",
    "batch_size": 2048,
    "output_layer": "softmax",
    "num_classes": 2,
}


class Object2VecParams(TorchRatingParams):
    """Defaults chosen on inner hold-outs of ua.base (``--only tune`` of
    benchmarks/object2vec_quality.py), never on ua.test: bias terms with a frequency-weighted L2 on
    the side vectors (``reg`` 0.05, ``reg_power`` 1) did best, Adam's weight decay 1e-3 beat 3e-4 and
    3e-3. On the rows of ub.test (which ua.base holds) one network's RMSE moved by up to 0.009 with
    its seed; three averaged (``members``) held within 0.0004 across seeds, and averaging networks
    with and without the user's history (``user_history=mixed``) did better than either kind alone
    (4 mixed 0.9499, 3 plain 0.9564, mf 0.9589); crossing that with the items' histories
    (``item_history=mixed``: four members, one of each combination) gained again (0.9453; every member
    with the item history 0.9466). Where dense Adam is too slow (``optimizer=auto`` on
    vocabularies of more than ``sparse_above`` tokens) Adam runs lazily on sparse gradients: 0.012
    RMSE behind dense Adam on a hold-out, but 0.005 ahead of sparse Adagrad at 0.93x its speed."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "seed-lab2": SEED_LAB2,
        "seed-lab2-classifier": SEED_LAB2_CLASSIFIER,
    }
    OTHER_NAMES: ClassVar[dict[str, str]] = {ours: sm for sm, ours in SAGEMAKER_ALIASES.items()}
    UNSUPPORTED: ClassVar[dict[str, str]] = SAGEMAKER_UNSUPPORTED

    # ----- the shared loop's settings, with this model's defaults ----------------------------------
    optimizer: Literal["auto", "adam", "adamw", "sgd", "adagrad"] = Field(  # type: ignore[assignment]
        "auto",
        description="(SageMaker: optimizer) auto: adam while both token tables together have at most "
        "sparse_above rows, else adam with sparse embedding gradients (sparse_gradients)",
    )
    sparse_above: int = Field(
        100_000,
        ge=0,
        description="optimizer=auto: token rows above which training updates only the batch's rows "
        "(dense Adam updates every row of every table at each step, which is what is slow on "
        "ml-20m-sized vocabularies)",
    )
    sparse_gradients: bool = Field(
        False,
        description="sparse embedding gradients with optimizer=adam: each step moves only the batch's "
        "rows and their moments (SparseAdam's lazy update), weight decay acting on those rows",
    )
    lr: float = Field(1e-3, gt=0, le=LR_MAX, description="learning rate (SageMaker: learning_rate)")
    reg: float = Field(0.05, ge=0, description="L2 on the two side vectors of each batch row")
    reg_power: float = Field(
        1.0,
        ge=0,
        le=1,
        description="weight of a row's L2 is (mean count / its count) ** reg_power: 1 shrinks every user "
        "and item alike over an epoch, so rarely seen ones are held back as much as frequent ones",
    )
    init_std: float = Field(0.05, gt=0, description="standard deviation of the initial token embeddings")
    epochs: int = Field(40, ge=1, description="passes over the training rows (SageMaker: epochs)")
    batch_size: int = Field(256, ge=1, description="rows per minibatch (SageMaker: mini_batch_size)")
    weight_decay: float = Field(
        1e-3, ge=0, description="L2 penalty on every weight (SageMaker: weight_decay)"
    )
    lr_schedule: Literal["constant", "step", "cosine", "plateau"] = "plateau"
    patience: int | None = Field(4, ge=1, description="early stopping (SageMaker: early_stopping_patience)")

    members: int | Literal["auto"] = Field(
        "auto",
        description="networks trained from seeds seed, seed+1, ... whose outputs are averaged; auto: "
        f"{AUTO_MEMBERS} up to {AUTO_MEMBERS_ROWS:,} training rows, else 1 (on small data a single "
        "network's quality depends much on its seed; on large data each member costs a full training)",
    )

    member_processes: int | Literal["auto"] = Field(
        "auto",
        description="worker processes training the members side by side, each with its share of the "
        "threads; auto: one per core (up to the members) on the CPU with threads=0 and at least "
        "20,000 training rows, else 1 (in turn, in this process)",
    )

    user_history: Literal["off", "on", "mixed"] = Field(
        "mixed",
        description="enc0 also adds the pooled embeddings of the items the user rated in training "
        "(SVD++'s implicit feedback): in no member, every member, or every second one (mixed: the "
        "ensemble then averages two views of each user, whose errors differ more than two seeds' do)",
    )

    item_history: Literal["off", "on", "mixed"] = Field(
        "mixed",
        description="enc1 also adds the pooled embeddings of the users who rated the item in training "
        "(the flipped implicit feedback): in no member, every member, or half of them (mixed; beside "
        "user_history=mixed the halves cross, so four members hold each combination once)",
    )

    session_gap: int | None = Field(
        None,
        ge=0,
        le=10 * 365 * 86400,
        description="seconds: a user's ratings at most this far apart in time form one session, whose "
        "bias joins the user's (timeSVD++'s day bias, per sitting); a query given its time reads the "
        "session it falls in. Needs timestamps and bias terms; None: no sessions",
    )
    session_reg: float = Field(
        30.0,
        ge=0,
        description="L2 on each session's bias, per session whatever its size: it is shrunk toward "
        "none about as if it held this many more ratings at the user's level (the loop's validation "
        "rows count in a session's size, and weight_decay shrinks the biases too); 30 was best of 3, "
        "10, 30 and 100 on an inner split of ua.base with session_gap=600",
    )
    session_residuals: list[int] | None = Field(
        None,
        description="windows (seconds either side of a query's time): a query given its time also "
        "reads the shrunk mean residual of the user's training rows in each window, weighed beside "
        "the model's output by a regression fitted on the members' early-stopping rows (sittings: "
        "MovieLens users rated a page at a time; with rating_classes the residuals of the expected "
        "rating as well). Needs timestamps, a validation cut and rated rows "
        "(no negative sampling, no refit); None: off. 0,1,600 had the lowest log loss of 0,600, "
        "0,1,600 and 0,1,600,86400 on an inner split of ua.base",
    )
    session_residuals_past: bool = Field(
        False,
        description="the session residuals' windows reach only back from the query's time (what a live "
        "service knows when the query is now); false: both ways, as a query inside a past sitting may",
    )
    session_residuals_similar: int | None = Field(
        None,
        ge=0,
        le=10 * 365 * 86400,
        description="one more session residual feature: within this window (seconds, at most the widest "
        "of session_residuals) the user's residuals weighed by how alike each row's movie is to the "
        "query's (cosine of co-occurrence vectors: who rated what), so a sitting's level is read per "
        "kind of movie; None: off. 600 on ml100k-ua-binary",
    )

    history_max_len: int = Field(
        1_000,
        ge=1,
        le=10_000_000,
        description="a user or item history longer than this keeps a seeded sample of this many (a "
        "popular movie of ml-20m has tens of thousands of raters; each row pools its whole history)",
    )

    # ----- encoders -------------------------------------------------------------------------------
    enc0_network: Network = Field("pooled_embedding", description="user-side encoder")
    enc1_network: Network = Field("pooled_embedding", description="item-side encoder")
    enc_dim: int = Field(128, ge=2, le=8192, description="size of each encoder's output")
    enc0_token_embedding_dim: int = Field(128, ge=1, le=4096, description="user-side token embedding size")
    enc1_token_embedding_dim: int = Field(128, ge=1, le=4096, description="item-side token embedding size")
    enc0_max_seq_len: int = Field(32, ge=1, le=10_000, description="longer user sequences are truncated")
    enc1_max_seq_len: int = Field(32, ge=1, le=10_000, description="longer item sequences are truncated")
    enc0_vocab_size: int | None = Field(None, ge=1, description="JSON Lines: raw in0 tokens are 0..size-1")
    enc1_vocab_size: int | None = Field(None, ge=1, description="JSON Lines: raw in1 tokens are 0..size-1")
    enc0_layers: int | Literal["auto"] = Field("auto", description="hcnn/bilstm depth (auto: 2 / 1)")
    enc1_layers: int | Literal["auto"] = Field("auto", description="hcnn/bilstm depth (auto: 2 / 1)")
    enc0_cnn_filter_width: int = Field(3, ge=1, le=64, description="hcnn convolution width")
    enc1_cnn_filter_width: int = Field(3, ge=1, le=64, description="hcnn convolution width")
    tied_token_embedding_weight: bool = Field(
        False,
        description="one token table for both sides; JSON Lines pairs share one vocabulary (token t is "
        "one row), users' and items' tokens keep apart in it",
    )
    shared_encoder: bool = Field(False, description="enc1 is enc0 (same network and weights)")

    # ----- tokens ---------------------------------------------------------------------------------
    user_tokens: list[UserKind] | Literal["auto"] = Field(
        "auto", description="user side tokens besides the id; auto: every kind the given features have"
    )
    item_tokens: list[ItemKind] | Literal["auto"] = Field(
        "auto", description="item side tokens besides the id; auto: every kind the given features have"
    )
    title_min_count: int = Field(
        2, ge=1, description="a title word becomes a token when this many movies have it"
    )
    year_bucket: int = Field(5, ge=1, le=100, description="width in years of the release-year token")
    id_dropout: float = Field(
        0.1, ge=0, lt=1, description="share of training rows whose id token is hidden (teaches content alone)"
    )

    # ----- comparator, MLP, output ----------------------------------------------------------------
    comparator_list: list[ComparatorOp] = Field(
        default_factory=lambda: list(ALL_COMPARATORS),
        min_length=1,
        description="joins of the two",
    )
    mlp_layers: int = Field(1, ge=0, le=16, description="hidden layers of the MLP")
    mlp_dim: int = Field(256, ge=1, le=16384, description="width of each hidden layer")
    mlp_activation: Literal["tanh", "relu", "linear"] = "relu"
    output_layer: Literal["mean_squared_error", "softmax"] = "mean_squared_error"
    num_classes: int = Field(2, ge=2, le=1000, description="softmax: labels are 0..num_classes-1")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the comparator output and MLP layers")
    bias_terms: bool = Field(
        True,
        description="a 1-d bias embedding per token, summed per side and added to the output: the "
        "user and item offsets that an MLP over the comparator otherwise has to learn the hard way",
    )

    # ----- labels ---------------------------------------------------------------------------------
    label_threshold: float | None = Field(
        None, description="softmax on ratings: label 1 where rating > threshold, else 0"
    )
    rating_classes: bool = Field(
        False,
        description="softmax with label_threshold: learn the num_classes rating classes (5 for 1-5 stars) "
        "and predict P(rating > label_threshold), the sum of the classes above it (the Bayes decision "
        "for accuracy, using every rating's value rather than only its side of the threshold)",
    )
    negative_sampling_rate: int = Field(
        0,
        ge=0,
        le=1000,
        description="sampled negatives (label 0) per positive row, none a known pair; 0: none. Ratings "
        "without label_threshold are all positives; a threshold's labels and a pairs file's 0/1 or "
        "class labels are kept",
    )
    negative_sampling: Literal["uniform", "popularity"] = Field(
        "uniform", description="how negatives are drawn: uniformly or in proportion to item counts"
    )

    @classmethod
    def canonical_names(cls, data: dict[str, Any]) -> dict[str, Any]:
        """SageMaker names → ours (both in one dict must agree); ``token_embedding_dim`` sets both
        sides unless a side is given; ``comparator_list`` may be SageMaker's comma-separated text."""
        data = dict(data)
        for sm, ours in SAGEMAKER_ALIASES.items():
            if sm in data:
                value = data.pop(sm)
                if ours in data and data[ours] != value:
                    raise ValueError(f"{sm!r} and {ours!r} name one setting; give only one of them")
                data[ours] = value
        if "token_embedding_dim" in data:
            value = data.pop("token_embedding_dim")
            for side in ("enc0_token_embedding_dim", "enc1_token_embedding_dim"):
                data.setdefault(side, value)
        one = data.get("session_residuals")
        if isinstance(one, int | float) and not isinstance(one, bool):  # --set session_residuals=600
            data["session_residuals"] = [one]
        if isinstance(data.get("session_residuals"), str):  # --set session_residuals=0,1,600
            text = data["session_residuals"].strip()
            data["session_residuals"] = (
                None if text.lower() in ("", "none", "off") else [x.strip() for x in text.split(",")]
            )
        if isinstance(data.get("comparator_list"), str):  # SageMaker passes "hadamard, concat"
            data["comparator_list"] = [x.strip() for x in data["comparator_list"].split(",") if x.strip()]
        return data

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, data: Any) -> Any:
        """SageMaker names → ours, then a preset's values under the explicit ones."""
        if not isinstance(data, dict):
            return data
        data = cls.canonical_names(data)
        preset = data.get("preset")
        if isinstance(preset, str) and preset in cls.PRESETS:
            return {**cls.PRESETS[preset], **data}
        return data

    @field_validator("enc0_layers", "enc1_layers")
    @classmethod
    def _layers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 8:
            raise ValueError("encoder layers must be 1..8 or 'auto'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Object2VecParams:
        if len(set(self.comparator_list)) != len(self.comparator_list):
            raise ValueError(f"comparator_list repeats an entry: {self.comparator_list}")
        if "bilstm" in (self.enc0_network, self.enc1_network) and self.enc_dim % 2:
            raise ValueError(f"bilstm needs an even enc_dim (half per direction), got {self.enc_dim}")
        same_dims = self.enc0_token_embedding_dim == self.enc1_token_embedding_dim
        if self.tied_token_embedding_weight and not same_dims:
            raise ValueError("tied_token_embedding_weight needs equal enc0/enc1 token embedding dims")
        if self.shared_encoder and (
            self.enc0_network != self.enc1_network
            or not same_dims
            or self.layers(0) != self.layers(1)
            or self.enc0_cnn_filter_width != self.enc1_cnn_filter_width
            or not self.tied_token_embedding_weight
        ):
            raise ValueError(
                "shared_encoder needs tied_token_embedding_weight and the same network, token "
                "embedding size, layers and filter width on both sides"
            )
        if self.session_gap is not None and not self.bias_terms:
            raise ValueError("session_gap adds a bias per session: it needs bias_terms=true")
        if self.session_residuals is not None:
            w = self.session_residuals
            if (
                not 1 <= len(w) <= 8
                or len(set(w)) != len(w)
                or not all(0 <= x <= 10 * 365 * 86400 for x in w)
            ):
                raise ValueError(
                    f"session_residuals takes 1 to 8 distinct windows of 0 to ten years in seconds, got {w}"
                )
            if self.negative_sampling_rate or self.refit or self.val_fraction == 0:
                raise ValueError(
                    "session_residuals weighs the residuals on the networks' early-stopping rows: it needs "
                    "rated rows (negative_sampling_rate=0), val_fraction > 0 and refit=false"
                )
        if self.session_residuals_similar is not None and (
            self.session_residuals is None or self.session_residuals_similar > max(self.session_residuals)
        ):
            raise ValueError(
                "session_residuals_similar is a window within the session residuals' widest: set "
                "session_residuals with a window of at least "
                f"{self.session_residuals_similar} s too"
            )
        if self.session_residuals_past and self.session_residuals is None:
            raise ValueError(
                "session_residuals_past says which way the session residuals' windows reach: "
                "set session_residuals too"
            )
        if self.rating_classes and (
            self.output_layer != "softmax" or self.label_threshold is None or self.negative_sampling_rate
        ):
            raise ValueError(
                "rating_classes needs output_layer=softmax and a label_threshold, without negative sampling"
            )
        if (
            self.label_threshold is not None
            and self.output_layer == "softmax"
            and self.num_classes != 2
            and not self.rating_classes
        ):
            raise ValueError(
                "label_threshold makes two classes; set num_classes=2 (or rating_classes=true to learn "
                "the rating classes and predict P(rating > label_threshold))"
            )
        return self

    @property
    def sparse_embeddings(self) -> bool:
        """The base's rule (Adagrad without weight decay), or Adam asked to be lazy."""
        return super().sparse_embeddings or (self.sparse_gradients and self.optimizer == "adam")

    def resolved(self, token_rows: int) -> Object2VecParams:
        """These params with ``optimizer=auto`` made concrete for vocabularies of ``token_rows`` rows.

        Large: Adam with sparse embedding gradients, which moves only the rows a batch touches (and
        their moments; weight decay acts on those rows). Small: dense Adam. Same lr and decay.
        """
        if self.optimizer != "auto":
            return self
        if token_rows > self.sparse_above:
            return self.model_copy(update={"optimizer": "adam", "sparse_gradients": True})
        return self.model_copy(update={"optimizer": "adam"})

    def train_config(self) -> TrainConfig:
        """The loop's settings; ``optimizer=auto`` must be made concrete by :meth:`resolved` first."""
        if self.optimizer == "auto":
            raise ValueError("optimizer=auto depends on the vocabulary size: call resolved(token_rows) first")
        return super().train_config()

    def n_members(self, n_rows: int) -> int:
        """How many networks to train on ``n_rows`` training rows (``members``, ``auto`` resolved)."""
        if self.members == "auto":
            return AUTO_MEMBERS if n_rows <= AUTO_MEMBERS_ROWS else 1
        return int(self.members)

    @field_validator("members", "member_processes")
    @classmethod
    def _members_range(cls, v: int | str, info: ValidationInfo) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 16:
            raise ValueError(f"{info.field_name} must be between 1 and 16 (or auto)")  # the value follows
        return v

    def layers(self, side: int) -> int:
        value = self.enc0_layers if side == 0 else self.enc1_layers
        if value == "auto":
            network = self.enc0_network if side == 0 else self.enc1_network
            return 2 if network == "hcnn" else 1
        return int(value)
