import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.data.splits import Fold
from recengine.errors import CapabilityError
from recengine.evaluation.protocols import build
from recengine.evaluation.runner import evaluate_folds, evaluate_protocol


def test_ml100k_u_bias_reports_each_fold_and_the_mean(ml100k_dir):
    res = evaluate_protocol("bias", "ml100k-u", data=str(ml100k_dir))
    assert [f["fold"] for f in res["folds"]] == ["u1", "u2", "u3", "u4", "u5"]
    assert res["rmse"] == pytest.approx(np.mean([f["rmse"] for f in res["folds"]]))
    assert 0.92 < res["rmse"] < 0.96  # Surprise's BaselineOnly: about 0.946
    assert res["protocol"] == "ml100k-u" and res["params"]["reg_user"] == 15


def test_binary_and_topn_tasks(ml100k_dir):
    b = evaluate_protocol("user-mean", "ml100k-ua-binary", data=str(ml100k_dir))
    assert {"accuracy", "f1", "auc", "log_loss"} <= b.keys()
    assert 0.6 < b["accuracy"] < 0.8 and b["auc"] > 0.6
    t = evaluate_protocol("popularity", "topn-ml100k", data=str(ml100k_dir))
    assert t["ndcg@10"] > 0.05 and t["hr@10"] > 0.3
    assert 0 < t["coverage@10"] < 0.2  # popularity recommends few distinct items


def test_capability_mismatch_is_refused_before_work():
    with pytest.raises(CapabilityError, match="does not predict ratings"):
        evaluate_protocol("popularity", "ml100k-u")


def test_cold_rows_are_counted():
    u = np.array([1, 1, 2, 2, 3])
    i = np.array([1, 2, 1, 3, 4])
    d = Interactions.from_arrays(u, i, np.array([4.0, 3, 5, 2, 1]))
    train = d.subset(np.array([True, True, True, False, False]))
    test = d.subset(np.array([False, False, False, True, True]))
    res = evaluate_folds("bias", [Fold("x", train, test)], "rating")
    assert res["folds"][0]["cold_user_rows"] == 1  # user 3 has no training rows
    assert res["folds"][0]["cold_item_rows"] == 2  # items 3 and 4 have none


def test_the_data_sets_features_reach_the_model_of_every_fold(ml100k_dir):
    """deep-mf with genres reads them from the data set the folds come from; without it, fit says
    what is missing, as when the library is called without features."""
    from recengine.data.load import load_dataset
    from recengine.errors import ConfigError

    ds = load_dataset(str(ml100k_dir))
    inter = ds.interactions
    first = inter.user < 40  # a small slice keeps the fit short
    rows = np.flatnonzero(first)
    test_mask = np.zeros(len(inter), dtype=bool)
    test_mask[rows[::10]] = True
    fold = Fold("slice", inter.subset(first & ~test_mask), inter.subset(test_mask))
    params = {"genres": True, "epochs": 2, "batch_size": 64, "threads": 1}
    res = evaluate_folds("deep-mf", [fold], "rating", params, dataset=ds)
    assert res["params"]["genres"] is True and 0.5 < res["rmse"] < 1.5
    with pytest.raises(ConfigError, match="needs item genres"):
        evaluate_folds("deep-mf", [fold], "rating", params)


def test_a_model_that_makes_its_labels_from_ratings_fits_on_them(ml100k_dir):
    """object2vec with rating_classes learns the five rating classes of a binary fold's training
    ratings and predicts P(rating > 3); given only the labels it could not (two classes, not five).
    A threshold other than the task's is refused by name."""
    from recengine.errors import ConfigError
    from recengine.evaluation.protocols import binary_fold

    ua = build("ml100k-ua", ml100k_dir).folds[0]
    few = ua.train.user < 30
    small = binary_fold(Fold("slice", ua.train.subset(few), ua.test.subset(ua.test.user < 30)))
    params = {
        "output_layer": "softmax",
        "num_classes": 5,
        "label_threshold": 3,
        "rating_classes": True,
        "epochs": 2,
        "members": 1,
        "enc_dim": 8,
        "mlp_dim": 8,
        "token_embedding_dim": 8,
        "threads": 1,
    }
    res = evaluate_folds("object2vec", [small], "binary", params)
    assert 0.5 < res["accuracy"] < 1 and 0 < res["log_loss"] < 1
    with pytest.raises(ConfigError, match="set label_threshold=3"):
        evaluate_folds("object2vec", [small], "binary", {**params, "label_threshold": 2})


def test_a_model_set_up_to_predict_labels_is_refused_by_a_rating_task():
    """object2vec with label_threshold (or negative sampling) predicts P(label = 1): its RMSE against
    stars would mean nothing, so a rating task refuses it before fitting."""
    u = np.array([1, 1, 2, 2, 3])
    i = np.array([1, 2, 1, 3, 4])
    d = Interactions.from_arrays(u, i, np.array([4.0, 3, 5, 2, 1]))
    fold = Fold("x", d, d)
    for params in ({"label_threshold": 3}, {"negative_sampling_rate": 2}):
        with pytest.raises(CapabilityError, match="predicts the probability of a label"):
            evaluate_folds("object2vec", [fold], "rating", params)
