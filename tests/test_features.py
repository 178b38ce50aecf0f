"""Features: the user transformer's scikit-learn contract, pair features, the feature dictionary, the stage."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import run_data_stage
from thinkalike_ml.features import (DEMOGRAPHIC_COLUMNS, UserFeatureTransformer, _toy_users, feature_dictionary,
                                    interest_sets, load_features, pair_features, run_features_stage)
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import run_splits_stage


def test_transformer_passes_sklearn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check_estimator(UserFeatureTransformer())  # raises on the first failing check


def test_transformer_pandas_output_names_and_no_demographics():
    users = _toy_users(80, seed=1)
    t = UserFeatureTransformer().set_output(transform="pandas")
    F = t.fit_transform(users)
    assert list(F.columns) == list(t.get_feature_names_out())
    assert F.index.equals(users.index)
    assert not any(c.split("=")[0] in DEMOGRAPHIC_COLUMNS for c in F.columns)
    assert not F.isna().any().any()
    np.testing.assert_allclose(F.mean(), 0, atol=1e-9)
    # transform is row-wise: a subset transforms to the same rows
    pd.testing.assert_frame_equal(t.transform(users.iloc[5:9]), F.iloc[5:9])
    # clone + refit gives the same result (no hidden state)
    pd.testing.assert_frame_equal(clone(t).fit_transform(users), F)


def test_transformer_errors_name_the_problem():
    users = _toy_users(20)
    t = UserFeatureTransformer().fit(users)
    with pytest.raises(ValueError, match="value_importance_Ethics"):
        t.transform(users.drop(columns=["value_importance_Ethics"]))
    with pytest.raises(ValueError, match="empty table"):
        UserFeatureTransformer().fit(users.iloc[:0])


def test_pair_features_symmetric_and_hand_computed():
    two = pd.DataFrame({"user_id": ["a", "b"], "value_importance_X": [1.0, 1.0], "value_position_X": [0.5, 0.5],
                        "value_importance_Y": [0.0, 1.0], "value_position_Y": [1.0, -1.0],
                        "interests": ["chess;music", "Music; film"]})
    f = pair_features(two, pd.DataFrame({"user_a": ["a", "b"], "user_b": ["b", "a"]}))
    np.testing.assert_allclose(f.iloc[0], f.iloc[1])
    r = f.iloc[0]
    assert r["value_cosine"] == pytest.approx(0.25 / (0.5 * np.sqrt(1.25)))
    assert r["value_weighted_agreement"] == pytest.approx(0.25)  # only X has weight: 0.5 * 0.5
    assert r["value_max_conflict"] == pytest.approx(0.0)
    assert r["interest_jaccard"] == pytest.approx(1 / 3)
    assert interest_sets(["a; B;", None]) == [{"a", "b"}, set()]


def test_feature_dictionary_covers_every_feature():
    users = _toy_users(40)
    t = UserFeatureTransformer().fit(users)
    pf = pair_features(users, pd.DataFrame({"user_a": users.user_id[:5], "user_b": users.user_id[5:10].to_numpy()}))
    fd = feature_dictionary(t, pf.columns)
    assert list(fd.columns) == ["name", "level", "meaning", "source", "transformation", "type"]
    assert list(fd.name) == list(t.get_feature_names_out()) + list(pf.columns)
    assert fd.meaning.str.len().min() > 10


def test_features_stage_writes_what_models_need(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    params = resolve_params(overrides=dict(n_users=200, n_items=30, dataset_store=""), small=True)
    run = RunDirectory.create(params, tmp_path)
    run_data_stage(run, params); run_splits_stage(run, params)
    m = run_features_stage(run, params)
    f = load_features(run)
    assert m["n_pairs"] == len(f["pair_features"]) > 0
    assert {"suggestion_id", "accepted", "split", "fold"} <= set(f["pair_features"].columns)
    assert set(f["pair_columns"]) <= set(f["pair_features"].columns)
    assert f["user_features"].user_id.is_unique
    assert not any(c.startswith(("gender", "region", "age_band")) for c in f["user_features"].columns)
    assert set(f["dictionary"].name) >= set(f["pair_columns"])


def test_history_cosine_learns_the_hidden_taste():
    """The generator's hidden taste is in no profile column; the history embedding recovers it, and a model with
    history_cosine beats the same model on the profile features alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from thinkalike_ml.data import generate_raw
    from thinkalike_ml.features import history_embeddings
    raw, truth = generate_raw(n_users=2000, n_items=120, interactions_per_user=20, suggestions_per_user=10, seed=5)
    s, t = raw["suggestions"], truth["suggestions"]
    hist = history_embeddings(raw["interactions"], seed=0)
    assert hist.shape == (raw["interactions"].user_id.nunique(), 1 + 8)
    profile = pair_features(raw["users"], s)
    both = pair_features(raw["users"], s, history=hist)
    assert list(both.columns) == list(profile.columns) + ["history_cosine"]
    assert np.corrcoef(both["history_cosine"], t["taste_match"])[0, 1] > 0.5  # it sees the taste
    assert abs(np.corrcoef(profile["value_cosine"], t["taste_match"])[0, 1]) < 0.05  # the profile does not
    n = len(s) // 2
    def test_auc(X):
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[:n], s.accepted[:n])
        return roc_auc_score(s.accepted[n:], m.predict_proba(X[n:])[:, 1])
    oracle = roc_auc_score(s.accepted[n:], t.p_accept[n:])
    with_history, profile_only = test_auc(both), test_auc(profile)
    assert with_history > profile_only + 0.0025, (with_history, profile_only)  # seeded: 0.0036 with taste weight 0.6
    assert oracle - with_history < oracle - profile_only


def test_history_embedding_leaks_nothing_from_held_out_interactions_or_the_matcher_test_period(tmp_path, monkeypatch):
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.features import history_embeddings, history_interactions
    from thinkalike_ml.splits import load_splits
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    params = resolve_params(overrides=dict(n_users=300, n_items=40, dataset_store="", matcher_split="time", interaction_split="user_random"), small=True)
    run = RunDirectory.create(params, tmp_path)
    run_data_stage(run, params); run_splits_stage(run, params)
    m = run_features_stage(run, params)
    data, splits, f = load_dataset(run), load_splits(run), load_features(run)
    used = history_interactions(data, splits, "time")
    held = data["suggestions"].merge(splits["suggestions"], on="suggestion_id").query("split != 'train'")
    it = data["interactions"].merge(splits["interactions"], on="interaction_id")
    assert 0 < len(used) == m["history_interactions"] < (it["split"] == "train").sum()  # random interaction folds: the time cut removes training rows too
    assert set(used["interaction_id"]) <= set(it.loc[it["split"] == "train", "interaction_id"])
    assert used["timestamp"].max() < held["timestamp"].min()
    # what the stage stored is the embedding of those rows alone: scrambling every other interaction changes nothing
    rest = ~data["interactions"]["interaction_id"].isin(used["interaction_id"])
    scrambled = dict(data, interactions=data["interactions"].assign(
        item_id=data["interactions"]["item_id"].where(~rest, np.random.default_rng(0).permutation(data["interactions"]["item_id"].to_numpy()))))
    again = history_embeddings(history_interactions(scrambled, splits, "time"), seed=params["seed"])
    pd.testing.assert_frame_equal(again, f["history"])
    assert "history_cosine" in f["pair_columns"]
    # a random matcher split has no time promise: only the interaction split's training rows count
    assert len(history_interactions(data, splits, "stratified")) == (it["split"] == "train").sum()


def test_users_without_history_get_zero_and_the_dictionary_says_so():
    from thinkalike_ml.features import history_embeddings
    users = _toy_users(6)
    it = pd.DataFrame({"user_id": users.user_id[[0, 0, 1, 1, 2]].to_numpy(), "item_id": ["x", "y", "x", "y", "z"]})
    hist = history_embeddings(it, dims=2)
    f = pair_features(users, pd.DataFrame({"user_a": users.user_id[[0, 0, 4]].to_numpy(), "user_b": users.user_id[[1, 5, 5]].to_numpy()}), history=hist)
    assert f["history_cosine"].tolist()[1:] == [0.0, 0.0] and f["history_cosine"].iloc[0] == pytest.approx(1.0)
    assert "history_cosine" not in pair_features(users, pd.DataFrame({"user_a": users.user_id[:1].to_numpy(), "user_b": users.user_id[1:2].to_numpy()}))
    row = feature_dictionary(None, ["history_cosine"]).iloc[0]
    assert "0 when either user has no" in row["meaning"] and row["source"].startswith("interactions")
    with pytest.raises(ValueError, match="'interactions' has no column 'item_id'"):
        history_embeddings(it.drop(columns="item_id"))
