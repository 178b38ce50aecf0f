"""The splits stage: reproducible splits by row id, stratification, time order, folds, leakage checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import empty_suggestions, load_dataset, run_data_stage
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import (LeakageError, check_no_overlap, check_splits, check_time_order, forward_chaining_folds,
                                  group_split, kfold_assign, load_splits, make_splits, run_splits_stage, split_by_time,
                                  split_fractions, stratified_kfold_assign, stratified_split)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    params = resolve_params(overrides=dict(n_users=300, n_items=40), small=True)
    r = RunDirectory.create(params, tmp_path_factory.mktemp("reports"))
    run_data_stage(r, params)
    run_splits_stage(r, params)
    yield r
    mp.undo()


def test_splits_are_stored_by_id_and_reproducible(run):
    params, tables, splits = run.params, load_dataset(run), load_splits(run)
    again = make_splits(tables, params)
    for name in splits: pd.testing.assert_frame_equal(splits[name], again[name], check_dtype=False)
    seeded = {**params, "matcher_split": "stratified"}  # the default time split does not depend on the seed; a random one does
    one, other = make_splits(tables, seeded), make_splits(tables, {**seeded, "seed": params["seed"] + 1})
    assert not one["suggestions"].split.equals(other["suggestions"].split)
    assert set(splits["suggestions"].suggestion_id) == set(tables["suggestions"].suggestion_id)
    assert set(splits["interactions"].interaction_id) == set(tables["interactions"].interaction_id)


def test_suggestion_split_is_stratified_and_folds_cover_train_only(run):
    tables, splits = load_dataset(run), load_splits(run)
    s = tables["suggestions"].merge(splits["suggestions"], on="suggestion_id")
    shares = s.split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.01) and shares["test"] == pytest.approx(0.15, abs=0.01)
    rates = s.groupby("split").accepted.mean()
    assert rates.max() - rates.min() < 0.02
    folds = splits["suggestion_folds"]
    assert set(folds.suggestion_id) == set(s.suggestion_id[s.split == "train"])
    assert sorted(folds.fold.unique()) == list(range(run.params["n_folds"]))
    summary = run.read_table("tables/split_summary.parquet")
    assert set(summary.table) == {"suggestions", "interactions"} and {"rows", "share", "positive_rate"} <= set(summary.columns)


def test_interactions_split_by_time_and_time_folds_validate_on_later_rows(run):
    tables, splits = load_dataset(run), load_splits(run)
    it = tables["interactions"].merge(splits["interactions"], on="interaction_id")
    span = it.groupby("split").timestamp.agg(["min", "max"])
    assert span.loc["train", "max"] < span.loc["validation", "min"] and span.loc["validation", "max"] < span.loc["test", "min"]
    folds = splits["interaction_time_folds"].merge(tables["interactions"][["interaction_id", "timestamp"]], on="interaction_id")
    assert sorted(folds.fold.unique()) == list(range(run.params["n_time_folds"]))
    assert not folds.interaction_id.isin(it.interaction_id[it.split == "test"]).any()
    for _, g in folds.groupby("fold"):
        assert g.timestamp[g.role == "train"].max() < g.timestamp[g.role == "validation"].min()


def test_leakage_checks_catch_leaks(run):
    tables, splits = load_dataset(run), load_splits(run)
    leaky = dict(splits)
    leaky["suggestions"] = pd.concat([splits["suggestions"], splits["suggestions"].iloc[:1].assign(split="test")])
    with pytest.raises(LeakageError, match="in more than one split"): check_splits(tables, leaky)
    flipped = dict(splits)
    flipped["interactions"] = splits["interactions"].assign(split=splits["interactions"].split.replace({"train": "test", "test": "train"}))
    with pytest.raises(LeakageError, match="must be strictly later"): check_splits(tables, flipped)


def test_splitters_on_plain_frames():
    df = pd.DataFrame({"y": np.r_[np.zeros(800), np.ones(200)].astype(int), "user": np.repeat(np.arange(250), 4),
                       "t": pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(1000) // 3, unit="h")})
    fr = split_fractions(0.1, 0.2)
    s = stratified_split(df, "y", fr, seed=0)
    assert s.value_counts().to_dict() == {"train": 700, "test": 200, "validation": 100}
    assert s.equals(stratified_split(df, "y", fr, seed=0))
    t = split_by_time(df, "t", fr)
    check_time_order(df.t, t, ["train", "validation", "test"])  # ties at the cuts stay on one side
    g = group_split(df, "user", fr, seed=0)
    assert df.assign(s=g).groupby("user").s.nunique().max() == 1
    check_no_overlap(df.user, g)
    assert np.bincount(kfold_assign(df, 4)).tolist() == [250] * 4
    assert df.groupby(stratified_kfold_assign(df.y, 4)).y.mean().tolist() == [0.2] * 4
    f = forward_chaining_folds(df.assign(i=range(1000)), "t", 3, "i")
    for _, fold in f.groupby("fold"):
        tt = df.t.to_numpy()
        assert tt[fold.i[fold.role == "train"]].max() < tt[fold.i[fold.role == "validation"]].min()
    with pytest.raises(ValueError, match="must sum to 1"): stratified_split(df, "y", {"train": 0.5, "test": 0.3})


def test_empty_suggestions_split_cleanly(run):
    tables = {**load_dataset(run), "suggestions": empty_suggestions()}
    out = make_splits(tables, run.params)
    assert len(out["suggestions"]) == 0 and len(out["suggestion_folds"]) == 0 and len(out["interactions"]) > 0
