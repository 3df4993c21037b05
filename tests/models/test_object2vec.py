"""Object2Vec: encoders, comparators, SageMaker names, presets, JSON Lines, negatives, cold start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from recengine.data.interactions import Interactions, RatingScale
from recengine.data.pairs import interactions_to_pairs, read_pairs, write_pairs
from recengine.errors import CapabilityError, ConfigError, DataError, TrainingError
from recengine.models.base import NotFittedError
from recengine.models.object2vec import Object2Vec
from recengine.models.object2vec.encoders import (
    BiLSTMEncoder,
    Comparator,
    HCNNEncoder,
    NetSpec,
    Object2VecNet,
    PooledEncoder,
)
from recengine.models.object2vec.members import (
    MemberInputs,
    MemberJob,
    plan_processes,
    read_job,
    write_jobs,
)
from recengine.models.object2vec.sampling import sample_negatives
from recengine.models.object2vec.tokens import (
    N_RESERVED,
    PAD,
    UNK,
    item_histories,
    title_words,
    user_histories,
)

#: One network (members=1) unless a test is about the ensemble.
FAST = {
    "threads": 1,
    "epochs": 30,
    "batch_size": 32,
    "enc_dim": 16,
    "mlp_dim": 16,
    "val_fraction": 0.0,
    "members": 1,
}
FAST_TOK = {**FAST, "enc0_token_embedding_dim": 16, "enc1_token_embedding_dim": 16}


def groups(n_users: int = 24, n_items: int = 16, seed: int = 0) -> Interactions:
    """Two taste groups: users of group g rate group-g items 5 and the others 1 (a subset of pairs)."""
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for u in range(n_users):
        for i in range(n_items):
            if rng.random() < 0.6:
                users.append(u)
                items.append(i)
                ratings.append(5.0 if (u % 2) == (i % 2) else 1.0)
    return Interactions.from_arrays(np.array(users), np.array(items), np.array(ratings))


def split_holdout(data: Interactions, seed: int = 1) -> tuple[Interactions, Interactions]:
    mask = np.random.default_rng(seed).random(len(data)) < 0.2
    return data.subset(~mask), data.subset(mask)


def rmse(model: Object2Vec, test: Interactions) -> float:
    p = model.predict_internal(test.user, test.item)
    return float(np.sqrt(np.mean((p - test.values()) ** 2)))


# ----- encoders and comparators learn a simple pattern ------------------------------------------------
@pytest.mark.parametrize("network", ["pooled_embedding", "hcnn", "bilstm"])
def test_each_encoder_learns_the_groups(network):
    train, test = split_holdout(groups())
    m = Object2Vec(FAST_TOK, enc0_network=network, enc1_network=network, lr=0.01, init_std=0.5).fit(train)
    assert rmse(m, test) < 1.0  # the global mean would be about 2


@pytest.mark.parametrize("ops", [["hadamard"], ["concat"], ["abs_diff"], ["hadamard", "concat", "abs_diff"]])
def test_each_comparator_learns_the_groups(ops):
    train, test = split_holdout(groups())
    # reg=0: the comparator's capacity on its own (a product of small vectors starts weak and the
    # default L2 holds it there on 24 users)
    m = Object2Vec(FAST_TOK, comparator_list=ops, lr=0.01, reg=0.0).fit(train)
    assert rmse(m, test) < 1.0


@pytest.mark.parametrize("act", ["tanh", "relu", "linear"])
def test_mlp_activations_and_no_hidden_layer(act):
    train, test = split_holdout(groups())
    for layers in (0, 2):
        m = Object2Vec(FAST_TOK, mlp_activation=act, mlp_layers=layers, lr=0.01).fit(train)
        assert rmse(m, test) < 1.2


# ----- gradient checks of the hand-written layers ---------------------------------------------------------
def _embedded(b: int = 3, length: int = 4, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, length, d, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return x, mask


@pytest.mark.parametrize("kind", ["pooled", "hcnn", "bilstm"])
def test_encoder_gradients(kind):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 5)
    enc: torch.nn.Module
    if kind == "pooled":
        enc = PooledEncoder(emb, 6)
    elif kind == "hcnn":
        enc = HCNNEncoder(emb, 6, layers=2, filter_width=3)
    else:
        enc = BiLSTMEncoder(emb, 6, layers=1)
    enc = enc.double()
    x, mask = _embedded()
    assert torch.autograd.gradcheck(lambda t: enc.encode(t, mask), (x,))


def test_pooled_fast_path_equals_masked_mean():
    torch.manual_seed(0)
    enc = PooledEncoder(torch.nn.Embedding(10, 5, padding_idx=PAD), 6)
    tokens = torch.tensor([[3, 4, 0], [5, 0, 0], [1, 2, 9]])
    slow = enc.encode(enc.embedding(tokens), tokens != PAD)
    torch.testing.assert_close(enc(tokens), slow)


def test_comparator_and_head_gradients():
    cmp = Comparator(["hadamard", "concat", "abs_diff"], 4)
    assert cmp.out_dim == 16
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(cmp, (a, b))
    spec = _spec(out_dim=2)
    net = Object2VecNet(
        spec, torch.ones(2, 1, dtype=torch.int64), torch.ones(2, 1, dtype=torch.int64)
    ).double()
    labels = torch.tensor([0, 1, 1])

    def loss(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(net.combine(u, i), labels)

    u = torch.randn(3, spec.enc_dim, dtype=torch.float64, generator=g, requires_grad=True)
    i = torch.randn(3, spec.enc_dim, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (u, i))


def _spec(out_dim: int = 1, **kw: object) -> NetSpec:
    base: dict[str, object] = dict(
        vocab0=6,
        vocab1=6,
        networks=("pooled_embedding", "pooled_embedding"),
        token_dims=(4, 4),
        enc_dim=4,
        layers=(1, 1),
        filter_widths=(3, 3),
        tied_embedding=False,
        shared_encoder=False,
        comparator=("hadamard", "concat", "abs_diff"),
        mlp_layers=1,
        mlp_dim=5,
        activation="tanh",
        dropout=0.0,
        out_dim=out_dim,
        init_std=0.1,
        id_dropout=(0.0, 0.0),
    )
    base.update(kw)
    return NetSpec(**base)  # type: ignore[arg-type]


def test_combine_grid_matches_pairs():
    torch.manual_seed(0)
    net = Object2VecNet(_spec(), torch.ones(2, 1, dtype=torch.int64), torch.ones(2, 1, dtype=torch.int64))
    u, i = torch.randn(3, 4), torch.randn(5, 4)
    grid = net.combine_grid(u, i)
    pairs = net.combine(u.repeat_interleave(5, dim=0), i.repeat(3, 1)).reshape(3, 5, 1)
    torch.testing.assert_close(grid, pairs)


def test_tied_and_shared_encoders_train():
    train, test = split_holdout(groups())
    m = Object2Vec(FAST_TOK, tied_token_embedding_weight=True, shared_encoder=True, lr=0.01).fit(train)
    net = m.net
    assert net is not None and net.enc0 is net.enc1
    assert rmse(m, test) < 1.0
    arrays = m.state_arrays()
    assert not any(k.startswith("enc1.") for k in arrays)  # the shared encoder is stored once
    c = Object2Vec(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), arrays, m.history)
    assert c.net is not None and c.net.enc0 is c.net.enc1
    u, i = test.user[:50], test.item[:50]
    np.testing.assert_allclose(c.predict_internal(u, i), m.predict_internal(u, i), rtol=1e-6)


# ----- parameters: SageMaker names, presets, rejects -----------------------------------------------
def test_sagemaker_names_are_accepted():
    m = Object2Vec(
        {
            "enc_dim": 64,
            "token_embedding_dim": 32,
            "enc0_network": "hcnn",
            "enc1_network": "bilstm",
            "enc0_max_seq_len": 4,
            "mlp_layers": 2,
            "mlp_dim": 32,
            "mlp_activation": "tanh",
            "output_layer": "softmax",
            "num_classes": 3,
            "negative_sampling_rate": 2,
            "tied_token_embedding_weight": "false",
            "early_stopping_patience": 5,
            "early_stopping_tolerance": 0.001,
            "mini_batch_size": 128,
            "learning_rate": 0.01,
            "epochs": 3,
            "optimizer": "adagrad",
            "weight_decay": 0.0,
            "dropout": 0.1,
            "comparator_list": "hadamard, abs_diff",
            "enc0_layers": "auto",
            "enc1_vocab_size": 10,
        }
    )
    p = m.params
    assert (p.batch_size, p.lr, p.patience, p.tolerance) == (128, 0.01, 5, 0.001)
    assert p.enc0_token_embedding_dim == p.enc1_token_embedding_dim == 32
    assert p.comparator_list == ["hadamard", "abs_diff"] and p.tied_token_embedding_weight is False
    assert p.layers(0) == 2 and p.layers(1) == 1
    # a SageMaker name given over params that hold the setting under our name replaces it
    again = Object2Vec(m.get_params(), learning_rate=0.05, mini_batch_size=64, token_embedding_dim=8).params
    assert (again.lr, again.batch_size) == (0.05, 64)
    assert again.enc0_token_embedding_dim == again.enc1_token_embedding_dim == 8


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("_kvstore", "'_kvstore' is not supported: a setting of SageMaker's training cluster"),
        ("enc0_pretrained_embedding_file", "is not supported: pretrained token embeddings are not loaded"),
        ("bucket_width", "'bucket_width' is not supported: sequences are padded"),
        ("frobnicate", "unknown parameter 'frobnicate'$"),
        ("enc_dmi", r"unknown parameter 'enc_dmi' \(did you mean 'enc_dim'\?\)"),
        ("learning_rat", r"unknown parameter 'learning_rat' \(did you mean 'learning_rate'\?\)"),
    ],
)
def test_unsupported_names_are_rejected_by_name(name, says):
    with pytest.raises(ConfigError, match=says):
        Object2Vec({name: "auto"})


def test_errors_name_the_settings_as_given():
    with pytest.raises(
        ConfigError, match=r"parameter 'lr' \(learning_rate\): Input should be greater than 0"
    ):
        Object2Vec(learning_rate=-1)
    with pytest.raises(ConfigError, match=r"^object2vec: rating_classes needs output_layer=softmax"):
        Object2Vec(rating_classes=True)  # a check across settings: no "parameter 'params'", no dict


def test_bad_values_and_conflicts():
    with pytest.raises(ConfigError, match="optimizer"):
        Object2Vec(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="give only one"):
        Object2Vec(lr=0.1, learning_rate=0.2)
    with pytest.raises(ConfigError, match="even enc_dim"):
        Object2Vec(enc0_network="bilstm", enc_dim=33)
    with pytest.raises(ConfigError, match="shared_encoder"):
        Object2Vec(shared_encoder=True, enc0_network="hcnn")
    with pytest.raises(ConfigError, match="repeats"):
        Object2Vec(comparator_list=["concat", "concat"])


def test_preset_fills_and_explicit_params_win():
    m = Object2Vec(preset="seed-lab2")
    p = m.params
    assert (p.enc_dim, p.enc0_token_embedding_dim, p.mlp_dim, p.mlp_activation) == (1024, 300, 256, "tanh")
    assert (p.batch_size, p.epochs, p.patience, p.tolerance, p.lr) == (64, 20, 3, 0.01, 0.001)
    c = Object2Vec({"preset": "seed-lab2-classifier", "mini_batch_size": 512}).params
    assert (c.enc_dim, c.mlp_dim, c.mlp_activation, c.output_layer, c.batch_size) == (
        2048,
        1024,
        "relu",
        "softmax",
        512,
    )
    assert Object2Vec(preset="seed-lab2", enc_dim=8).params.enc_dim == 8
    with pytest.raises(ConfigError, match="unknown preset"):
        Object2Vec(preset="seed-lab9")
    assert Object2Vec(**m.get_params()).get_params() == m.get_params()  # round trip through JSON data


# ----- JSON Lines ---------------------------------------------------------------------------------------
def test_fit_from_json_lines_and_pair_inference(tmp_path: Path):
    data = groups()
    path = tmp_path / "train.jsonl"
    write_pairs(path, data.user + 1, data.item + 1, data.values())  # raw tokens 1..n like the notebook
    m = Object2Vec(FAST_TOK, lr=0.01).fit_pairs(path)
    assert m.layout["mode"] == "pairs"
    pairs = read_pairs(path)
    scores = m.predict_pairs(pairs)
    assert scores.shape == (len(data),)
    assert np.sqrt(np.mean((scores - data.values()) ** 2)) < 0.8
    np.testing.assert_allclose(m.predict(data.user[:5] + 1, data.item[:5] + 1), scores[:5], rtol=1e-5)
    assert m.embed(0, [[1], [2]]).shape == (2, 16)
    assert m.embed(1, [[3, 4]]).shape == (1, 16)  # any sequence of known raw tokens
    with pytest.raises(DataError, match="in1 of row 0 holds token 999"):
        m.embed(1, [[999]])
    # token input as people hold it: a 1-D array is one token a row; floats, bools and text are refused
    np.testing.assert_array_equal(m.embed(0, np.array([1, 2])), m.embed(0, [[1], [2]]))
    for bad in (np.array([[0.9], [1.7]]), [[1.5]], [[True]], [["1"]], np.zeros((1, 0), dtype=np.int64)):
        with pytest.raises(DataError, match=r"integers|empty token sequence"):
            m.embed(0, bad)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="out of range"):
        m.embed(0, [[2**63]])
    empty = interactions_to_pairs(data.subset(np.zeros(len(data), dtype=bool)))
    assert m.predict_pairs(empty).shape == (0,)
    huge = tmp_path / "huge.jsonl"
    write_pairs(huge, [[1], [2]], [[3], [2**40]], [4.0, 3.0])
    with pytest.raises(DataError, match="number the tokens 0"):
        Object2Vec(FAST_TOK).fit_pairs(huge)


def test_tied_tables_of_json_lines_pairs_share_one_token_space(tmp_path: Path):
    """SageMaker's tied_token_embedding_weight: in0 and in1 hold tokens of one vocabulary, so token t
    is one embedding row on both sides (users and items, by contrast, keep apart)."""
    path = tmp_path / "p.jsonl"
    rng = np.random.default_rng(0)
    write_pairs(path, rng.integers(0, 40, (200, 3)), rng.integers(0, 30, (200, 2)), rng.random(200))
    m = Object2Vec(
        FAST_TOK, epochs=1, tied_token_embedding_weight=True, shared_encoder=True, bias_terms=False
    ).fit_pairs(path)
    assert m.net is not None and m.net.get_parameter("enc0.embedding.weight").shape[0] == 40 + 2  # not 74
    np.testing.assert_allclose(m.embed(0, [[5], [7, 9]]), m.embed(1, [[5], [7, 9]]), rtol=1e-6)
    c = Object2Vec(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    np.testing.assert_array_equal(c.embed(1, [[5]]), m.embed(1, [[5]]))
    users = Object2Vec(FAST_TOK, epochs=1, tied_token_embedding_weight=True).fit(groups())
    assert users.net is not None and users.net.offset1 == users.layout["vocab"][0]


def test_many_classes_early_stop_on_cross_entropy():
    """Over more than two unordered classes the validation metric is the cross-entropy of the true
    class, computed from the softmax, not the RMSE of the mean class index."""
    from recengine.models._torch_nets import RatingTask

    data = groups()
    labels = ((data.user + data.item) % 3).astype(np.float32)
    three = Interactions.from_arrays(data.user, data.item, labels, scale=RatingScale(0.0, 2.0, 1.0))
    m = Object2Vec(FAST_TOK, output_layer="softmax", num_classes=3, epochs=2, val_fraction=0.2).fit(three)
    assert m.history["val_metric"] == "cross_entropy" and m.history["best_value"] > 0
    net = m.net
    assert net is not None
    task = RatingTask(net, None, 0.0, False)
    task.val_metric = "cross_entropy"
    u, i, lab = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([2, 0])
    with torch.no_grad():
        got = task.predict({"user": u, "item": i, "label": lab})
        want = torch.softmax(net(u, i), dim=-1)[torch.arange(2), lab]
    torch.testing.assert_close(got, want)


def test_json_lines_softmax_classes(tmp_path: Path):
    data = groups()
    labels = (data.values() > 3).astype(np.float32)
    path = tmp_path / "bin.jsonl"
    write_pairs(path, data.user, data.item, labels)
    m = Object2Vec(FAST_TOK, lr=0.01, output_layer="softmax").fit_pairs(path)
    probs = m.predict_pairs(path)
    assert probs.shape == (len(data), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean((probs[:, 1] > 0.5) == labels) > 0.9
    bad = tmp_path / "bad.jsonl"
    write_pairs(bad, data.user, data.item, data.values())
    with pytest.raises(DataError, match="does not fit output_layer=softmax"):
        Object2Vec(FAST_TOK, output_layer="softmax").fit_pairs(bad)
    # Errors found after reading name the file's line (blank lines counted), not a pair's index.
    lines = [f'{{"in0": [{k % 5}], "in1": [{k % 7}], "label": {k % 2}}}' for k in range(30)]
    lines[11] = '{"in0": [1], "in1": [2], "label": 7}'
    lines[20] = '{"in0": [1500], "in1": [2], "label": 1}'
    bad.write_text("\n\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 14: label 7 does not fit"):
        Object2Vec(FAST_TOK, output_layer="softmax").fit_pairs(bad)
    with pytest.raises(DataError, match=r"bad\.jsonl, line 23: in0 holds token 1500, outside .*0\.\.999"):
        Object2Vec(FAST_TOK, enc0_vocab_size=1000).fit_pairs(bad)
    in_memory = read_pairs(bad)
    in_memory.source = None
    with pytest.raises(DataError, match=r"^pair 12: label 7 does not fit"):
        Object2Vec(FAST_TOK, output_layer="softmax").fit_pairs(in_memory)


def test_malformed_json_lines_name_line_and_field(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"in0": [1], "in1": [2], "label": 4}\n{"in0": [1], "in1": "x", "label": 3}\n')
    with pytest.raises(DataError, match=r"line 2.*'in1'"):
        Object2Vec(FAST).fit_pairs(path)
    path.write_text('{"in0": [1], "in1": [2]}\n')
    with pytest.raises(DataError, match="need a 'label'"):
        Object2Vec(FAST).fit_pairs(path)


def test_sequences_longer_than_max_seq_len_are_truncated_and_counted(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    in0 = [[1], [2], [1], [2]]
    in1 = [[3, 4, 5, 6, 7], [3], [8, 9], [3]]
    write_pairs(path, in0, in1, np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.warns(UserWarning, match="1 in1 token sequences were longer than max_seq_len=3"):
        m = Object2Vec(FAST, enc1_max_seq_len=3, epochs=2).fit_pairs(path)
    assert m.history["object2vec"]["truncated"] == {"user": 0, "item": 1}
    with pytest.warns(UserWarning, match="truncated"):
        m.embed(1, [[1, 2, 3, 4, 5]])


# ----- labels -------------------------------------------------------------------------------------------
def test_softmax_on_ratings_needs_a_threshold():
    data = groups()
    with pytest.raises(DataError, match="label_threshold"):
        Object2Vec(FAST, output_layer="softmax").fit(data)
    m = Object2Vec(FAST_TOK, output_layer="softmax", label_threshold=3, lr=0.01).fit(data)
    p = m.predict_internal(data.user, data.item)
    assert p.min() >= 0 and p.max() <= 1  # P(label = 1), not a rating
    assert np.mean((p > 0.5) == (data.values() > 3)) > 0.9
    assert m.scale is not None and m.scale.high == 1.0
    labels = data.with_ratings((data.values() > 3).astype(np.float32), RatingScale(0.0, 1.0, 1.0))
    with pytest.raises(DataError, match="label_threshold=3 is outside the ratings' scale"):
        Object2Vec(FAST, output_layer="softmax", label_threshold=3).fit(labels)  # every label 0


def _graded() -> Interactions:
    """Ratings 1-5 with a user offset and an item offset, so every class occurs."""
    rng = np.random.default_rng(5)
    users, items = np.meshgrid(np.arange(20), np.arange(15), indexing="ij")
    keep = rng.random(users.shape) < 0.7
    u, i = users[keep], items[keep]
    r = np.clip(np.round(1 + (u % 5) * 0.5 + (i % 5) * 0.5 + rng.normal(0, 0.3, len(u))), 1, 5)
    return Interactions.from_arrays(u, i, r)


def test_rating_classes_predict_the_probability_above_the_threshold():
    data = _graded()
    m = Object2Vec(
        FAST_TOK, output_layer="softmax", num_classes=5, label_threshold=3, rating_classes=True, lr=0.01
    ).fit(data)
    assert m.layout["positive_classes"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert m.scale is not None and m.scale.high == 1.0
    net = m.net
    assert net is not None
    with torch.inference_mode():
        u = torch.from_numpy(data.user.astype(np.int64))
        i = torch.from_numpy(data.item.astype(np.int64))
        probs = torch.softmax(net(u, i), dim=-1).double().numpy()
    assert probs.shape == (len(data), 5)
    p = m.predict_internal(data.user, data.item)
    np.testing.assert_allclose(p, probs[:, 3] + probs[:, 4], rtol=1e-5, atol=1e-6)  # P(4) + P(5)
    assert np.mean((p > 0.5) == (data.values() > 3)) > 0.85
    two = m.predict_pairs(interactions_to_pairs(data))
    np.testing.assert_allclose(two[:, 1], p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two.sum(axis=1), 1.0, rtol=1e-6)
    assert m.input_scale == data.scale  # fitted on stars: a history is given in stars
    liked = m.fold_in(np.array([0, 2, 4]), np.array([5.0, 4.0, 1.0]))
    assert m.net is not None
    assert liked.shape == (m.net.side_dim,) and np.all(np.isfinite(liked))
    with pytest.raises(DataError, match="rating 0 is outside the model's scale 1"):
        m.fold_in(np.array([0, 2, 4]), np.array([1.0, 1.0, 0.0]))
    # a model saved before its input scale was: the history's 0/1 labels reach the head as P(label = 1)
    old = Object2Vec(m.get_params()).restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    assert old.input_scale == old.scale
    labels = old.fold_in(np.array([0, 2, 4]), np.array([1.0, 1.0, 0.0]))
    assert labels.shape == liked.shape and np.all(np.isfinite(labels))


def test_rating_classes_checks():
    with pytest.raises(ConfigError, match="rating_classes needs"):
        Object2Vec(output_layer="softmax", num_classes=5, rating_classes=True)
    with pytest.raises(ConfigError, match="rating_classes=true"):
        Object2Vec(output_layer="softmax", num_classes=5, label_threshold=3)
    m = Object2Vec(FAST, output_layer="softmax", num_classes=4, label_threshold=3, rating_classes=True)
    with pytest.raises(DataError, match="set num_classes=5"):
        m.fit(_graded())


def test_bias_terms_gradients_and_head_directions():
    g = torch.Generator().manual_seed(2)
    for out_dim in (1, 2, 5):
        net = Object2VecNet(
            _spec(out_dim=out_dim, bias=True),
            torch.ones(2, 1, dtype=torch.int64),
            torch.ones(2, 1, dtype=torch.int64),
        ).double()
        assert net.side_dim == 5
        u = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
        i = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(net.combine, (u, i))
        # the summed bias moves a rating up one for one, and the logits toward the higher classes
        lifted = u.detach().clone()
        lifted[:, -1] += 1.0
        diff = net.combine(lifted, i.detach()) - net.combine(u.detach(), i.detach())
        want = torch.ones(1) if out_dim == 1 else torch.arange(out_dim) - (out_dim - 1) / 2
        torch.testing.assert_close(diff, want.double().expand(3, -1))
    # each side's bias is the sum of its tokens' biases (padding left out)
    net = Object2VecNet(
        _spec(bias=True), torch.ones(2, 1, dtype=torch.int64), torch.ones(2, 1, dtype=torch.int64)
    )
    with torch.no_grad():
        net.bias1.weight[:, 0] = torch.arange(6.0)
    out = net.encode(1, torch.tensor([[2, 3, 0], [5, 0, 0]]))
    torch.testing.assert_close(out[:, -1], torch.tensor([5.0, 5.0]))


def test_auto_optimizer_is_sparse_on_large_vocabularies():
    from recengine.models.object2vec.params import Object2VecParams

    def chosen(rows: int) -> tuple[object, ...]:
        p = Object2VecParams.model_validate({}).resolved(rows)
        return (p.optimizer, p.lr, p.weight_decay, p.sparse_embeddings)

    assert chosen(5_000) == ("adam", 1e-3, 1e-3, False)
    assert chosen(200_000) == ("adam", 1e-3, 1e-3, True)
    adagrad = Object2VecParams.model_validate({"optimizer": "adagrad", "weight_decay": 0})
    assert adagrad.resolved(200_000).sparse_embeddings  # the base's rule still holds
    given = Object2VecParams.model_validate({"optimizer": "adam"}).resolved(200_000)
    assert given.optimizer == "adam" and not given.sparse_embeddings  # an explicit choice is kept
    with pytest.raises(ValueError, match="resolved"):
        Object2VecParams.model_validate({}).train_config()
    train, test = split_holdout(groups())
    m = Object2Vec(FAST_TOK, sparse_above=0, lr=0.01).fit(train)  # the sparse path, tiny vocabulary
    assert m.history["object2vec"]["optimizer"] == {"optimizer": "adam", "lr": 0.01, "sparse": True}
    net = m.net
    assert net is not None
    assert getattr(net.enc0, "embedding").sparse and getattr(net, "bias0").sparse  # noqa: B009
    assert rmse(m, test) < 1.0


def test_without_bias_terms_side_vectors_are_the_encodings():
    m = Object2Vec(FAST_TOK, epochs=2, bias_terms=False).fit(groups())
    assert m.net is not None and m.net.side_dim == 16 and not hasattr(m.net, "bias0")


def test_negative_sampling_never_emits_a_known_positive_and_respects_the_rate():
    rng = np.random.default_rng(3)
    n_users, n_items = 7, 9
    users, items = [], []
    for user in range(n_users):
        k = int(rng.integers(1, n_items))  # user 0..6 each with 1..8 known items, none with all 9
        users += [user] * k
        items += sorted(rng.choice(n_items, size=k, replace=False).tolist())
    u, i = np.array(users), np.array(items)
    known = set(zip(users, items, strict=True))
    for mode in ("uniform", "popularity"):
        for seed in range(20):
            nu, ni, short, rows = sample_negatives(u, i, n_items, 3, mode, seed)
            assert short == 0
            assert not known & set(zip(nu.tolist(), ni.tolist(), strict=True))
            np.testing.assert_array_equal(u[rows], nu)  # each negative names the row it was drawn for
            np.testing.assert_array_equal(
                np.bincount(nu, minlength=n_users), 3 * np.bincount(u, minlength=n_users)
            )
    # a user with the whole catalog cannot get negatives: counted, not invented
    full_u = np.array([0] * n_items + [1])
    full_i = np.array([*range(n_items), 0])
    nu, ni, short, _ = sample_negatives(full_u, full_i, n_items, 2, "uniform", 0)
    assert short == 2 * n_items and set(nu.tolist()) == {1} and 0 not in ni


def test_negatives_are_drawn_per_positive_and_avoid_every_known_pair():
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([0, 1, 2, 0, 3])
    positive = np.array([True, False, False, True, True])
    nu, ni, _, rows = sample_negatives(users, items, 6, 4, "uniform", 0, positive=positive)
    assert np.bincount(nu).tolist() == [4, 8]  # rate × the user's positives
    assert np.bincount(rows).tolist() == [4, 0, 0, 4, 4]  # drawn for the positive rows only
    assert not set(zip(nu.tolist(), ni.tolist(), strict=True)) & set(zip(users, items, strict=True))
    with pytest.raises(ValueError, match="one flag per row"):
        sample_negatives(users, items, 6, 1, positive=positive[:2])


def test_labels_with_negative_sampling(tmp_path: Path):
    """A threshold's labels and a pairs file's labels are kept, negatives come per positive; ratings
    alone are all positives; a head left with one label, or implicit rows without negatives, refused."""
    from recengine.models.object2vec.data import pairs_training_data, training_arrays

    data = groups()
    positives = int(np.sum(data.values() > 3))
    arrays, info, _ = training_arrays(data, Object2Vec(label_threshold=3, negative_sampling_rate=2).params)
    assert info["negatives"] == 2 * positives < 2 * len(data)
    assert int(arrays["target"][: len(data)].sum()) == positives  # the threshold's 0s stay 0
    arrays, info, _ = training_arrays(data, Object2Vec(negative_sampling_rate=2).params)
    assert info["negatives"] == 2 * len(data) and arrays["target"][: len(data)].min() == 1  # stars: rated
    labels = (data.values() > 3).astype(np.float32)
    path = tmp_path / "p.jsonl"
    write_pairs(path, data.user, data.item, labels)
    for head in ({}, {"output_layer": "softmax"}):
        params = Object2Vec(negative_sampling_rate=1, **head).params
        train, *_ = pairs_training_data(read_pairs(path), params)
        arrays, info, _ = training_arrays(train, params)
        assert info["negatives"] == positives and arrays["target"][: len(train)].sum() == positives
    write_pairs(path, data.user, data.item, np.where(labels > 0, 7.0, 0.0))
    with pytest.raises(DataError, match=r"label 7 .* num_classes=2"):
        pairs_training_data(
            read_pairs(path), Object2Vec(negative_sampling_rate=1, output_layer="softmax").params
        )
    implicit = Interactions.from_arrays(data.user, data.item, None)
    for bad in ({}, {"output_layer": "softmax"}, {"label_threshold": 3, "negative_sampling_rate": 1}):
        with pytest.raises(DataError, match="no ratings, so every label would be 1"):
            training_arrays(implicit, Object2Vec(**bad).params)
    ones = Interactions.from_arrays(data.user, data.item, np.ones(len(data)), scale=RatingScale(0, 1, 1))
    with pytest.raises(DataError, match=r"every training label is 1.*negative_sampling_rate"):
        training_arrays(ones, Object2Vec(output_layer="softmax").params)
    arrays, *_ = training_arrays(ones, Object2Vec(output_layer="softmax", negative_sampling_rate=1).params)
    assert set(arrays["label"].tolist()) == {0, 1}


def test_popularity_sampling_prefers_popular_items():
    users = np.repeat(np.arange(200), 2)
    items = np.where(np.arange(400) % 2 == 0, 0, 1 + np.arange(400) % 50)
    _, ni, _, _ = sample_negatives(users, items, 200, 1, "popularity", 0)
    counts = np.bincount(ni, minlength=200)
    assert counts[1:51].sum() > 0.9 * len(ni)  # only items with training rows are drawn


def test_negative_sampling_model_ranks_the_own_group_first():
    data = groups()
    m = Object2Vec(FAST_TOK, negative_sampling_rate=2, output_layer="softmax", lr=0.01).fit(data)
    assert m.history["object2vec"]["negatives"] == 2 * len(data)
    assert m.scale is not None and (m.scale.low, m.scale.high) == (0.0, 1.0)
    # a history is given in the ratings it was fitted on, and every rated item is a positive
    items = np.array([0, 2, 4])
    assert m.input_scale == data.scale
    np.testing.assert_array_equal(m.fold_in(items, [5.0, 1.0, 3.0]), m.fold_in(items, [1.0, 1.0, 1.0]))


def test_a_threshold_model_folds_in_the_labels_of_a_history_of_stars():
    data = groups()
    m = Object2Vec(FAST_TOK, output_layer="softmax", label_threshold=3, lr=0.01, epochs=3).fit(data)
    items = np.array([0, 2, 4])
    same = m.fold_in(items, [5.0, 4.0, 1.0])
    np.testing.assert_array_equal(same, m.fold_in(items, [4.0, 5.0, 3.0]))  # the same labels: 1, 1, 0
    assert not np.array_equal(same, m.fold_in(items, [1.0, 1.0, 5.0]))


# ----- side tokens, cold start, content ------------------------------------------------------------------
def content_data() -> tuple[Interactions, pl.DataFrame, pl.DataFrame]:
    """Even items (genre A, "Love" titles) are liked by everyone, odd ones (genre B, "War") disliked;
    items 18 (A) and 19 (B) have a single rating each, left out of training in the cold-start test."""
    rng = np.random.default_rng(0)
    users, items, ratings = [], [], []
    for u in range(30):
        for i in range(18):
            if rng.random() < 0.5:
                users.append(u)
                items.append(i)
                ratings.append(5.0 if i % 2 == 0 else 1.0)
    users += [0, 0]
    items += [18, 19]
    ratings += [5.0, 1.0]
    data = Interactions.from_arrays(np.array(users), np.array(items), np.array(ratings))
    meta = pl.DataFrame(
        {
            "item": list(range(20)),
            "title": [f"Movie {i} {'Love' if i % 2 == 0 else 'War'}" for i in range(20)],
            "year": [1990 + i for i in range(20)],
            "genres": [["A"] if i % 2 == 0 else ["B"] for i in range(20)],
        }
    )
    people = pl.DataFrame(
        {
            "user": list(range(30)),
            "age": [20 + u for u in range(30)],
            "gender": ["M", "F"] * 15,
            "occupation": ["x"] * 30,
        }
    )
    return data, meta, people


def test_cold_item_is_embedded_from_content():
    data, meta, people = content_data()
    train = data.subset(data.items.to_external(data.item) < 18)  # items 18, 19: nobody rated them
    m = Object2Vec(FAST_TOK, lr=0.01, id_dropout=0.3)
    m.set_item_features(
        meta["item"], meta["genres"].to_list(), titles=meta["title"].to_list(), years=meta["year"].to_list()
    )
    m.set_user_features(people["user"], ages=people["age"].to_list(), genders=people["gender"].to_list())
    m.fit(train)
    h = m.history["object2vec"]["side_tokens"]
    assert h == {"user": ["age", "gender"], "item": ["genres", "title", "year"]}
    net = m.net
    assert net is not None
    cold = m.items.to_internal([18, 19])
    assert net.get_buffer("item_tokens")[cold, 0].tolist() == [UNK, UNK]
    emb = m.item_embeddings()
    with pytest.warns(UserWarning, match="genre:nonexistent"):
        unknown = m.new_item_vectors(genres=[["nonexistent"]])
    unknown_enc = unknown[0, : emb.shape[1]]  # new_item_vectors end with the item's bias term
    assert not np.allclose(emb[cold[0]], unknown_enc) and not np.allclose(emb[cold[1]], unknown_enc)
    # the cold items are predicted like the rated items of their genre and title words
    assert m.predict(np.arange(30), np.full(30, 18)).mean() > 4.0
    assert m.predict(np.arange(30), np.full(30, 19)).mean() < 2.0
    vec = m.new_item_vectors(genres=[["A"], ["B"]], titles=["Movie Love", "Movie War"], years=[2000, 2000])
    scores = m.predict_new_items(np.arange(30), vec)
    assert scores.shape == (30, 2) and np.all(scores[:, 0] > scores[:, 1])
    ids, _ = m.similar_to_vectors(vec[:1], k=5)
    assert np.mean(ids[0] % 2 == 0) >= 0.8
    with pytest.warns(UserWarning, match="not in the training vocabulary"):
        m.new_item_vectors(genres=[["A", "Z"]])
    # genres as numpy arrays or polars Series read as lists; a bare string is refused, not spelled out
    as_arrays = m.new_item_vectors(genres=[np.array(["A"]), pl.Series(["B"])])
    np.testing.assert_array_equal(as_arrays, m.new_item_vectors(genres=[["A"], ["B"]]))
    with pytest.raises(TypeError, match=r"genres\[0\] is the text 'A': give each item's genres as a list"):
        m.new_item_vectors(genres=["A"])
    # years as numbers of any kind: a float32 NaN is unknown like a float64 one, a bool is refused
    unknown_year = m.new_item_vectors(genres=[["A"]], years=[np.float32("nan")])  # type: ignore[list-item]
    np.testing.assert_array_equal(unknown_year, m.new_item_vectors(genres=[["A"]], years=[None]))
    np.testing.assert_array_equal(
        m.new_item_vectors(genres=[["A"]], years=[np.float64(2000.5)]),
        m.new_item_vectors(genres=[["A"]], years=[2000]),
    )
    with pytest.raises(TypeError, match=r"years\[0\] is True"):
        m.new_item_vectors(genres=[["A"]], years=[True])
    m.set_item_features([1], [["A"]], years=[1995.5])  # as new items take it (was a polars TypeError)
    with pytest.raises(TypeError, match=r"titles\[0\] is 123"):
        m.new_item_vectors(titles=[123])  # type: ignore[list-item]
    with pytest.raises(NotFittedError):
        Object2Vec(FAST_TOK).new_item_vectors(genres=[["A"]])
    # What a fitted model says it can do follows its fit: new items only with item content
    assert m.fitted_capabilities().new_items
    ids_only = Object2Vec(FAST_TOK, epochs=1).fit(train)
    assert not ids_only.fitted_capabilities().new_items and ids_only.fitted_capabilities().new_users
    assert Object2Vec.capabilities.new_items  # the class can, given content


def test_vocab_size_is_for_json_lines_only():
    with pytest.raises(ConfigError, match="enc0_vocab_size applies to training from JSON Lines"):
        Object2Vec(FAST, enc0_vocab_size=944).fit(groups())


def test_item_tokens_asked_for_but_not_given_is_an_error():
    with pytest.raises(ConfigError, match="item side tokens"):
        Object2Vec(FAST, item_tokens=["genres"]).fit(groups())
    m = Object2Vec(FAST, epochs=1).fit(groups())  # auto, nothing given: ids only, recorded
    assert m.history["object2vec"]["side_tokens"] == {"user": [], "item": []}
    with pytest.raises(CapabilityError, match="without item side tokens"):
        m.new_item_vectors(genres=[["A"]])


def test_title_words():
    assert title_words("Die Hard (1988)") == ["die", "hard"]
    assert title_words("Terminator, The") == ["terminator"]
    assert title_words(None) == []


# ----- determinism, state, embeddings --------------------------------------------------------------------
def test_same_seed_same_model_and_state_round_trip():
    data, meta, _ = content_data()
    a = Object2Vec(FAST_TOK, epochs=3, dropout=0.2)
    a.set_item_features(meta["item"], meta["genres"].to_list(), titles=meta["title"].to_list())
    a.fit(data)
    b = Object2Vec(FAST_TOK, epochs=3, dropout=0.2)
    b.set_item_features(meta["item"], meta["genres"].to_list(), titles=meta["title"].to_list())
    b.fit(data)
    np.testing.assert_array_equal(
        a.predict_internal(data.user, data.item), b.predict_internal(data.user, data.item)
    )
    c = Object2Vec(**a.get_params())
    c.restore(a.users, a.items, a.scale, a.seen(), a.state_arrays(), a.history)
    np.testing.assert_array_equal(
        a.predict_internal(data.user, data.item), c.predict_internal(data.user, data.item)
    )
    np.testing.assert_array_equal(a.new_item_vectors(genres=[["A"]]), c.new_item_vectors(genres=[["A"]]))
    assert json.dumps(c.layout) == json.dumps(a.layout)


def test_embeddings_and_similar_items():
    data = groups()
    m = Object2Vec(FAST_TOK, lr=0.01).fit(data)
    assert m.user_embeddings().shape == (data.n_users, 16)
    assert m.item_embeddings().shape == (data.n_items, 16)
    np.testing.assert_allclose(m.embed(1, [[3]])[0], m.item_embeddings()[3], rtol=1e-5)
    ids, _ = m.similar_items([0, 1], k=3)
    assert np.mean(ids[0] % 2 == 0) >= 2 / 3 and np.mean(ids[1] % 2 == 1) >= 2 / 3
    with pytest.raises(DataError, match="one internal item id"):
        m.embed(1, [[999]])


#: A quick Object2Vec for the seeded ml-100k quality floors (a few epochs, small dimensions).
SMALL_ML100K: dict[str, Any] = {
    "threads": 1,
    "epochs": 4,
    "batch_size": 512,
    "lr": 0.003,
    "weight_decay": 1e-4,
    "val_fraction": 0.0,
    "enc_dim": 32,
    "mlp_dim": 64,
    "token_embedding_dim": 32,
    "members": 1,
}


def test_interactions_pairs_round_trip():
    data = groups()
    m = Object2Vec(FAST_TOK, epochs=2).fit(data)
    pairs = interactions_to_pairs(data)
    np.testing.assert_allclose(m.predict_pairs(pairs), m.predict_internal(data.user, data.item), rtol=1e-5)


# ----- quality floor on real data ------------------------------------------------------------------------
def test_quality_floor_on_ml100k_ua(ml100k_dir: Path):
    from recengine.evaluation.protocols import build
    from recengine.models.baselines import Bias

    run = build("ml100k-ua", ml100k_dir)
    fold = run.folds[0]
    bias = Bias().fit(fold.train)
    base = float(
        np.sqrt(np.mean((bias.predict_internal(fold.test.user, fold.test.item) - fold.test.values()) ** 2))
    )
    m = Object2Vec(**SMALL_ML100K)
    m.use_dataset(run.dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(fold.train)
    got = rmse(m, fold.test)
    assert got < base - 0.01, f"object2vec RMSE {got:.4f} does not beat the bias baseline {base:.4f}"
    assert got < 0.955


def test_rating_classes_binary_floor_on_ml100k_ua(ml100k_dir: Path):
    """Five rating classes learned from ua.base, P(rating > 3) scored on ua.test's binary labels."""
    from recengine.evaluation.metrics import binary_metrics
    from recengine.evaluation.protocols import build

    ratings = build("ml100k-ua", ml100k_dir)
    binary = build("ml100k-ua-binary", ml100k_dir).folds[0]
    m = Object2Vec(
        **SMALL_ML100K,
        output_layer="softmax",
        num_classes=5,
        label_threshold=3,
        rating_classes=True,
    )
    m.use_dataset(ratings.dataset)
    m.fit(ratings.folds[0].train)
    got = binary_metrics(binary.test.values(), m.predict_internal(binary.test.user, binary.test.item))
    assert got["accuracy"] > 0.69 and got["auc"] > 0.75 and got["log_loss"] < 0.58, got


# ----- the ensemble of seeds -------------------------------------------------------------------------
def test_members_auto_by_data_size_and_bounds():
    p = Object2Vec().params
    assert p.members == "auto" and p.n_members(90_000) == 4 and p.n_members(20_000_000) == 1
    assert Object2Vec(members=2).params.n_members(20_000_000) == 2
    assert Object2Vec(preset="seed-lab2").params.n_members(90_000) == 1  # the notebook trains one
    with pytest.raises(ConfigError, match="members"):
        Object2Vec(members=0)


def test_ensemble_is_the_mean_of_networks_trained_from_consecutive_seeds():
    data, meta, _ = content_data()
    params = {**FAST_TOK, "epochs": 4, "members": 3, "seed": 5, "user_history": "off", "item_history": "off"}

    def fitted(**kw: Any) -> Object2Vec:
        m = Object2Vec(params, **kw)
        m.set_item_features(meta["item"], meta["genres"].to_list(), titles=meta["title"].to_list())
        return m.fit(data)

    ens = fitted()
    singles = [fitted(members=1, seed=5 + j) for j in range(3)]
    got = ens.predict_internal(data.user, data.item)
    each = [s.predict_internal(data.user, data.item) for s in singles]
    np.testing.assert_allclose(got, np.clip(np.mean(each, axis=0), 1, 5), rtol=1e-5, atol=1e-5)
    assert len({float(np.round(e[0], 5)) for e in each}) > 1  # the members differ
    # Side vectors are the members' side by side; embeddings leave out each member's bias column.
    assert ens.item_embeddings().shape == (data.n_items, 3 * 16)
    np.testing.assert_allclose(
        ens.item_embeddings(), np.hstack([s.item_embeddings() for s in singles]), rtol=1e-5, atol=1e-6
    )
    assert ens.new_item_vectors(genres=[["A"]]).shape == (1, 3 * 17)
    # neighbours of a new item's side vector or of an item's embedding; another width is refused
    near, _ = ens.similar_to_vectors(ens.item_embeddings()[:1], k=1)
    assert near[0, 0] == data.items.external[0]
    assert ens.similar_to_vectors(ens.new_item_vectors(genres=[["A"]]), k=3)[0].shape == (1, 3)
    with pytest.raises(ValueError, match=r"shape \(n, 51\) as new_item_vectors gives them, or \(n, 48\)"):
        ens.similar_to_vectors(np.zeros((1, 16)))
    info = ens.history["object2vec"]["members"]
    assert [m["best_epoch"] for m in info] == [4, 4, 4]
    # The catalog scores, fold-in of a new user and the saved state go through all members.
    scores = ens.score(np.array([0, 1]))
    np.testing.assert_allclose(
        scores[0, data.item[data.user == 0]], got[data.user == 0], rtol=1e-4, atol=1e-4
    )
    folded = ens.fold_in([data.items.external[0]], [5.0])
    assert np.isfinite(folded).all()
    c = Object2Vec(**ens.get_params())
    c.restore(ens.users, ens.items, ens.scale, ens.seen(), ens.state_arrays(), ens.history)
    np.testing.assert_array_equal(c.predict_internal(data.user, data.item), got)
    assert c.layout["members"] == 3


def test_each_member_checkpoints_apart_and_resumes(tmp_path: Path):
    data = groups()
    m = Object2Vec(FAST_TOK, epochs=3, members=2)
    m.fit(data, checkpoint_dir=tmp_path)
    assert (tmp_path / "member-1").is_dir()
    again = Object2Vec(FAST_TOK, epochs=3, members=2)
    again.fit(data, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(
        again.predict_internal(data.user, data.item), m.predict_internal(data.user, data.item)
    )


def test_a_resumed_fit_must_have_the_models_settings(tmp_path: Path):
    """The checkpoint keeps the model's own settings: resuming with another network is refused by
    name (it used to mix the two runs, or fail on a weight's shape); where the members run is not
    one of them."""
    data = groups()
    Object2Vec(FAST_TOK, epochs=2, members=2).fit(data, checkpoint_dir=tmp_path)
    with pytest.raises(
        TrainingError, match=r"other model settings \(mlp_activation: 'relu' then, 'tanh' now\)"
    ):
        Object2Vec(FAST_TOK, epochs=2, members=2, mlp_activation="tanh").fit(
            data, checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(TrainingError, match="enc_dim: 16 then, 32 now"):
        Object2Vec({**FAST_TOK, "enc_dim": 32}, epochs=2, members=2).fit(
            data, checkpoint_dir=tmp_path, resume=True
        )
    Object2Vec(FAST_TOK, epochs=2, members=2, member_processes=2).fit(
        data, checkpoint_dir=tmp_path, resume=True
    )


def test_members_trained_in_worker_processes_equal_those_trained_in_turn(tmp_path: Path):
    data = groups()
    params = {**FAST_TOK, "epochs": 3, "members": 3, "seed": 2}  # mixed: the 2nd member reads histories
    in_turn = Object2Vec(params, member_processes=1).fit(data)
    side = Object2Vec(params, member_processes=2).fit(data, checkpoint_dir=tmp_path)
    assert side.history["object2vec"]["member_processes"] == 2
    assert in_turn.history["object2vec"]["member_processes"] == 1
    np.testing.assert_array_equal(
        side.predict_internal(data.user, data.item), in_turn.predict_internal(data.user, data.item)
    )
    outcome = [
        [{k: v for k, v in m.items() if k != "seconds"} for m in model.history["object2vec"]["members"]]
        for model in (side, in_turn)
    ]
    assert outcome[0] == outcome[1]
    assert side.layout["history_members"] == [False, True, False]
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} >= {"member-1", "member-2"}
    resumed = Object2Vec(params, member_processes=2).fit(data, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(
        resumed.predict_internal(data.user, data.item), side.predict_internal(data.user, data.item)
    )


def test_the_worker_that_failed_is_the_one_named(monkeypatch: pytest.MonkeyPatch):
    """Member 1's worker was killed (status -9); member 0's was then stopped by the caller (no status
    recorded): the error names member 1."""
    from recengine.models.object2vec import members

    monkeypatch.setattr(members, "_run_workers", lambda root, n, processes: [None, -9])
    with pytest.raises(TrainingError, match="member 1's worker process ended with status -9"):
        Object2Vec(FAST_TOK, epochs=1, members=2, member_processes=2).fit(groups())


_ORPHAN = """
import os, signal, sys, threading, time
from pathlib import Path
from recengine.models.object2vec import _worker
signal.signal(signal.SIGTERM, _worker._stop)
try:
    threading.Thread(target=_worker._watch_parent, args=(int(sys.argv[2]),), daemon=True).start()
    Path(sys.argv[1] + ".ready").write_text("training")
    time.sleep(120)
finally:
    Path(sys.argv[1]).write_text("cleaned up")
"""


def test_a_worker_stops_and_cleans_up_when_its_parent_dies(tmp_path: Path):
    """A caller killed with SIGKILL cannot stop its workers; each notices it is orphaned, and stops
    as SIGTERM stops it: unwinding, so that temporary files are removed."""
    marker = tmp_path / "marker"
    parent = (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {_ORPHAN!r}, {str(marker)!r}, str(os.getpid())], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"while not os.path.exists({str(marker) + '.ready'!r}):\n"
        "    time.sleep(0.05)\n"
        "print(p.pid, flush=True)\n"
        "os._exit(0)\n"  # gone at once, its worker mid-way, as after kill -9
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.strip())
    for _ in range(300):  # bounded: the worker checks its parent every second
        if marker.exists() and not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert marker.read_text() == "cleaned up"


def test_member_processes_plan_and_checks():
    assert plan_processes("auto", 4, 90_000, threads=0, cpu=True, cores=2) == 2
    assert plan_processes("auto", 4, 90_000, threads=0, cpu=True, cores=16) == 4
    assert plan_processes("auto", 4, 90_000, threads=1, cpu=True, cores=16) == 1  # threads bound the fit
    assert plan_processes("auto", 4, 90_000, threads=0, cpu=False, cores=16) == 1  # one GPU: in turn
    assert plan_processes("auto", 4, 1_000, threads=0, cpu=True, cores=16) == 1  # too small to pay
    assert plan_processes("auto", 1, 90_000, threads=0, cpu=True, cores=16) == 1
    assert plan_processes(8, 3, 10, threads=1, cpu=True, cores=2) == 3  # explicit: up to the members
    with pytest.raises(ConfigError, match="member_processes"):
        Object2Vec(member_processes=0)
    # Side by side is for the CPU: on CUDA it is refused (without CUDA, the device itself is).
    match = (
        "member_processes=2 trains members side by side" if torch.cuda.is_available() else "no usable CUDA"
    )
    with pytest.raises(ConfigError, match=match):
        Object2Vec(FAST_TOK, members=2, member_processes=2, device="cuda").fit(groups())


def test_members_side_by_side_from_a_script_without_a_main_guard(tmp_path: Path):
    """The workers are fresh interpreters on a job file: the caller's script is not run again, and
    the caller's stdout holds its own output only."""
    script = tmp_path / "fit.py"
    script.write_text(
        "import json, numpy as np\n"
        "from recengine.data.interactions import Interactions\n"
        "from recengine.models.object2vec import Object2Vec\n"
        "rng = np.random.default_rng(0)\n"
        "u, i = rng.integers(0, 20, 300), rng.integers(0, 15, 300)\n"
        "data = Interactions.from_arrays(u, i, ((u + i) % 5 + 1).astype(float))\n"
        f"m = Object2Vec({FAST_TOK!r}, epochs=2, members=2, member_processes=2).fit(data)\n"
        "print(json.dumps({'processes': m.history['object2vec']['member_processes']}))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"processes": 2}


def test_member_jobs_round_trip_through_their_file(tmp_path: Path):
    tokens = np.arange(12, dtype=np.int64).reshape(6, 2) % 6
    history = (np.array([0, 2, 3, 3, 5, 6, 6], dtype=np.int64), np.array([1, 2, 0, 4, 5, 3], dtype=np.int64))
    shared = MemberInputs(
        user_tokens=tokens,
        item_tokens=tokens[::-1].copy(),
        history=history,
        item_history=history,
        values=np.array([0.0, 1.0]),
        center=True,
        reg=0.01,
        val_metric="log_loss",
        resume=True,
    )
    jobs = [
        MemberJob(
            seed=3 + j,
            spec=_spec(out_dim=2, history=j == 1, item_history=j == 1, history_users=6, history_items=6),
            config=Object2Vec(FAST_TOK, seed=3 + j).params.resolved(12).train_config(),
            checkpoint_dir=tmp_path / f"ckpt-{j}" if j else None,
            progress=False,
        )
        for j in range(2)
    ]
    arrays: dict[str, np.ndarray] = {
        "user": np.array([0, 1]),
        "target": np.array([1.0, 0.0], dtype=np.float32),
    }
    write_jobs(tmp_path, jobs, shared, arrays)
    for j, job in enumerate(jobs):
        back, back_shared, rows = read_job(tmp_path, j)
        assert back == job  # seed, spec, loop settings, checkpoint folder
        assert (back_shared.center, back_shared.reg, back_shared.val_metric, back_shared.resume) == (
            True,
            0.01,
            "log_loss",
            True,
        )
        assert back_shared.history is not None
        np.testing.assert_array_equal(back_shared.history[1], history[1])
        assert back_shared.item_history is not None
        np.testing.assert_array_equal(back_shared.item_history[0], history[0])
        np.testing.assert_array_equal(back_shared.item_tokens, shared.item_tokens)
        assert rows.keys() == arrays.keys() and rows["target"].dtype == np.float32
        torch.testing.assert_close(
            back.build(back_shared).state_dict(), job.build(shared).state_dict()
        )  # same seed, same start
    with pytest.raises(ValueError, match="needs the history table"):
        jobs[1].build(replace(shared, history=None))
    with pytest.raises(ValueError, match="items' histories needs the history table"):
        jobs[1].build(replace(shared, item_history=None))


def test_a_failing_member_in_a_worker_raises_in_the_caller():
    data = groups()
    bad = Object2Vec(
        FAST_TOK, epochs=2, members=2, member_processes=2, optimizer="sgd", lr=10.0, center=False
    )
    with pytest.raises(TrainingError, match="training loss is inf at epoch 1"):
        bad.fit(data)


# ----- the user's history on the user side -------------------------------------------------------------
def _without_history(net: Object2VecNet, spec: NetSpec, prefix: str) -> Object2VecNet:
    """The 3-user, 4-item test network under ``spec`` (one history off), with ``net``'s other weights."""
    plain = Object2VecNet(spec, torch.full((3, 2), PAD), torch.full((4, 2), PAD))
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(prefix)})
    return plain


def test_user_histories_are_csr_rows_of_the_rated_items():
    data = Interactions.from_arrays(np.array([2, 0, 2, 1]), np.array([5, 6, 7, 5]), np.array([1.0, 2, 3, 4]))
    offsets, items = user_histories(data)
    assert offsets.tolist() == [0, 1, 2, 4]
    ext = data.items.external[items].tolist()
    assert ext[:2] == [6, 5] and sorted(ext[2:]) == [5, 7]


def test_pooled_history_is_the_scaled_sum_of_rated_items_and_gets_gradients():
    spec = replace(_spec(), history=True, history_users=3, history_items=4)
    offsets = torch.tensor([0, 2, 2, 5])
    rated = torch.tensor([1, 3, 0, 1, 2])
    net = Object2VecNet(spec, torch.full((3, 2), PAD), torch.full((4, 2), PAD), (offsets, rated))
    w = net.history.weight
    got = net.pooled_history(torch.tensor([0, 1, 2, -1, 7]))
    torch.testing.assert_close(got[0], (w[1] + w[3]) / 2**0.5)
    torch.testing.assert_close(got[2], (w[0] + w[1] + w[2]) / 3**0.5)
    assert torch.equal(got[1], torch.zeros(spec.enc_dim))  # no ratings
    assert torch.equal(got[3:], torch.zeros(2, spec.enc_dim))  # a hidden id (UNK) and an unknown one
    got.sum().backward()
    assert w.grad is not None and bool((w.grad[[0, 1, 2, 3]] != 0).any(dim=1).all())
    # The user side reads it through the id token (N_RESERVED + the internal id).
    tokens = torch.tensor([[N_RESERVED + 2, PAD]])
    with torch.no_grad():
        base = _without_history(net, replace(spec, history=False), "history")
        torch.testing.assert_close(net.encode(0, tokens), base.encode(0, tokens) + got[2:3].detach())


def test_user_history_choice_per_member_and_pairs_mode(tmp_path: Path):
    data = groups()
    mixed = Object2Vec(FAST_TOK, epochs=2, members=3).fit(data)
    assert mixed.layout["history_members"] == [False, True, False]
    on = Object2Vec(FAST_TOK, epochs=2, user_history="on").fit(data)
    assert on.layout["history_members"] == [True] and on.layout["history"]["users"] == data.n_users
    c = Object2Vec(**mixed.get_params())
    c.restore(mixed.users, mixed.items, mixed.scale, mixed.seen(), mixed.state_arrays(), mixed.history)
    np.testing.assert_array_equal(
        c.predict_internal(data.user, data.item), mixed.predict_internal(data.user, data.item)
    )
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, data.user + 1, data.item + 1, data.values())
    assert Object2Vec(FAST_TOK, epochs=1, members=2).fit_pairs(path).layout["history_members"] == [
        False,
        False,
    ]
    with pytest.raises(ConfigError, match="user_history=on"):
        Object2Vec(FAST_TOK, epochs=1, user_history="on").fit_pairs(path)


# ----- the items' histories on the item side (flipped implicit feedback) -------------------------------
def test_item_histories_are_csr_rows_of_the_raters():
    data = Interactions.from_arrays(np.array([2, 0, 2, 1]), np.array([5, 6, 7, 5]), np.array([1.0, 2, 3, 4]))
    offsets, users = item_histories(data)
    assert offsets.tolist() == [0, 2, 3, 4]
    ext = data.users.external[users].tolist()
    assert sorted(ext[:2]) == [1, 2] and ext[2:] == [0, 2]


def test_pooled_item_history_is_the_scaled_sum_of_raters_and_reaches_the_item_side():
    spec = replace(_spec(), item_history=True, history_users=3, history_items=4)
    offsets = torch.tensor([0, 1, 1, 4, 5])
    raters = torch.tensor([2, 0, 1, 2, 1])
    net = Object2VecNet(spec, torch.full((3, 2), PAD), torch.full((4, 2), PAD), None, (offsets, raters))
    w = net.item_history.weight
    got = net.pooled_item_history(torch.tensor([0, 1, 2, 3, -1, 9]))
    torch.testing.assert_close(got[0], w[2])
    assert torch.equal(got[1], torch.zeros(spec.enc_dim))  # nobody rated it
    torch.testing.assert_close(got[2], (w[0] + w[1] + w[2]) / 3**0.5)
    assert torch.equal(got[4:], torch.zeros(2, spec.enc_dim))  # a hidden id (UNK) and an unknown one
    got.sum().backward()
    assert w.grad is not None and bool((w.grad != 0).any(dim=1).all())
    tokens = torch.tensor([[N_RESERVED + 2, PAD]])
    with torch.no_grad():
        plain = _without_history(net, replace(spec, item_history=False), "item_history")
        torch.testing.assert_close(net.encode(1, tokens), plain.encode(1, tokens) + got[2:3].detach())
        torch.testing.assert_close(net.encode(0, tokens), plain.encode(0, tokens))  # users untouched
    with pytest.raises(ValueError, match="item history needs"):
        Object2VecNet(spec, torch.full((3, 2), PAD), torch.full((4, 2), PAD))


def test_item_history_choice_crosses_the_user_history_and_round_trips(tmp_path: Path):
    data = groups()
    crossed = Object2Vec(FAST_TOK, epochs=2, members=4, item_history="mixed").fit(data)
    pairs = list(zip(crossed.layout["history_members"], crossed.layout["item_history_members"], strict=True))
    assert pairs == [(False, False), (True, False), (False, True), (True, True)]
    alone = Object2Vec(FAST_TOK, epochs=2, members=2, user_history="off", item_history="mixed").fit(data)
    assert alone.layout["item_history_members"] == [False, True]
    assert alone.layout["history"] == {"users": data.n_users, "items": data.n_items}
    c = Object2Vec(**crossed.get_params())
    m = crossed
    c.restore(m.users, m.items, m.scale, m.seen(), m.state_arrays(), m.history)
    np.testing.assert_array_equal(
        c.predict_internal(data.user, data.item), crossed.predict_internal(data.user, data.item)
    )
    state = crossed.state_arrays()
    # One copy of each table and history for all members: under the first member that reads it.
    assert [k for k in state if k.endswith("item_history_users")] == ["members.2.item_history_users"]
    assert [k for k in state if k.endswith("history_items")] == ["members.1.history_items"]
    assert [k for k in state if k.endswith("user_tokens")] == ["members.0.user_tokens"]
    assert c.net is not None and c.net.get_buffer("members.3.item_history_users") is c.net.get_buffer(
        "members.2.item_history_users"
    )
    c.net._apply(lambda t: t.clone())  # what moving to another device does: every buffer copied
    assert c.net.get_buffer("members.3.item_history_users") is c.net.get_buffer(
        "members.2.item_history_users"
    )
    assert c.net.get_buffer("user_tokens") is c.net.get_buffer("members.3.user_tokens")
    np.testing.assert_array_equal(
        c.predict_internal(data.user, data.item), crossed.predict_internal(data.user, data.item)
    )
    del state["members.2.item_history_users"]
    with pytest.raises(DataError, match="item history of member 2"):
        Object2Vec(**crossed.get_params()).restore(
            crossed.users, crossed.items, crossed.scale, crossed.seen(), state, crossed.history
        )
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, data.user + 1, data.item + 1, data.values())
    with pytest.raises(ConfigError, match="item_history=on"):
        Object2Vec(FAST_TOK, epochs=1, item_history="on").fit_pairs(path)


def test_histories_longer_than_the_cap_keep_a_seeded_sample_in_input_order():
    # user 0 rated 8 items, user 1 two; items 0 and 3 have both users as raters
    users = np.array([0] * 8 + [1, 1])
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 3])
    data = Interactions.from_arrays(users + 10, items + 20, np.ones(10))
    full_offsets, full = user_histories(data)
    with pytest.warns(UserWarning, match="1 user histories were longer than history_max_len=3"):
        offsets, kept = user_histories(data, max_len=3, seed=5)
    assert offsets.tolist() == [0, 3, 5]
    row0 = kept[:3].tolist()
    assert len(set(row0)) == 3 and set(row0) <= set(full[:8].tolist())
    assert row0 == [i for i in full[:8].tolist() if i in row0]  # still in input order
    assert kept[3:].tolist() == full[8:].tolist()  # a short row is whole
    with pytest.warns(UserWarning):
        again = user_histories(data, max_len=3, seed=5)[1]
    assert again.tolist() == kept.tolist()  # the same seed draws the same sample
    draws = set()
    for seed in range(6):
        with pytest.warns(UserWarning):
            draws.add(tuple(user_histories(data, max_len=3, seed=seed)[1][:3].tolist()))
    assert len(draws) > 1  # another seed another sample
    # at or above the longest row nothing changes and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = user_histories(data, max_len=8)
        raters = item_histories(data, max_len=2)
    assert same[0].tolist() == full_offsets.tolist() and same[1].tolist() == full.tolist()
    assert raters[0].tolist() == item_histories(data)[0].tolist()


def test_the_history_cap_reaches_training_and_the_saved_model():
    data = groups()
    per_user = np.bincount(data.user)
    cap = int(np.sort(per_user)[len(per_user) // 2])  # about half the users are over it
    with pytest.warns(UserWarning, match="history_max_len"):
        model = Object2Vec(FAST_TOK, epochs=1, user_history="on", item_history="on", history_max_len=cap)
        model.fit(data)
    info = model.history["object2vec"]["history_sampled"]
    assert info["user"] == int((per_user > cap).sum()) > 0
    assert info["item"] == int((np.bincount(data.item) > cap).sum())
    offsets = model.state_arrays()["history_offsets"]
    assert int(np.diff(offsets).max()) == cap
    c = Object2Vec(**model.get_params())
    c.restore(model.users, model.items, model.scale, model.seen(), model.state_arrays(), model.history)
    np.testing.assert_array_equal(
        c.predict_internal(data.user, data.item), model.predict_internal(data.user, data.item)
    )
    with pytest.raises(ConfigError, match="history_max_len"):
        Object2Vec(history_max_len=0)
