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
