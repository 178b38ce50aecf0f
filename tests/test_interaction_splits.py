"""Interaction splits: global_time, user_time, user_random; the 'auto' choice on long-history files; the few-users warning."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import build_dataset, dataset_hash, export_data, generate_raw, load_dataset
from thinkalike_ml.runs import RunDirectory, new_manifest, update_index
from thinkalike_ml.splits import (INTERACTION_SPLITS, LeakageError, check_interaction_split, choose_interaction_split, evaluated_users,
                                  interaction_leak, load_splits, split_by_time, split_fractions, split_interactions)
from thinkalike_ml.stages import execute_stage

# A long-history file set: 1000 users, each active for about a week (lognormal) somewhere in the year, as in public ratings logs.
LONG = dict(n_users=1000, n_items=40, interactions_per_user=10.0, activity_days=7.0)
SMALL = dict(n_trials=2, n_folds=3, n_time_folds=2, n_bootstrap=50, ab_simulations=10, dataset_store="")
FR = split_fractions(0.15, 0.15)


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-interaction-splits-key")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture(scope="module")
def long_files(tmp_path_factory) -> dict:
    "The generator's long-history tables (users, items, interactions) written as CSV files for the files path."
    out = export_data(resolve_params(overrides={**SMALL, **LONG}, small=True), tmp_path_factory.mktemp("long"), ["users", "items", "interactions"])
    return out["files"]


def _files_run(tmp_path, files, name, **overrides) -> RunDirectory:
    params = resolve_params(overrides={**SMALL, "source": "files", "files": files, **overrides}, small=True)
    run = RunDirectory.create(params, tmp_path/name)
    execute_stage(run, "data")
    return run


def test_the_default_generator_output_is_unchanged():
    "The long-history option leaves the default data byte-identical: the small default dataset keeps its content hash (pinned when the interaction draws moved into blocks of users with random streams of their own, for the Dask engine)."
    assert dataset_hash(build_dataset(resolve_params(small=True))["tables"]) == "ea4da6abc56b454452c705fc1d49c315a1c699f481158c57b0441b5889ebe3bc"
    a, b = generate_raw(n_users=200, n_items=20, seed=3)[0], generate_raw(n_users=200, n_items=20, seed=3, activity_days=0.0)[0]
    for t in a: pd.testing.assert_frame_equal(a[t], b[t])


def test_long_history_auto_picks_user_time_evaluates_10x_more_users_and_the_report_says_why(tmp_path, long_files):
    from thinkalike_ml.pipeline import run_stage
    from thinkalike_ml.stages import stage
    run = _files_run(tmp_path, long_files, "auto")
    assert run.params["interaction_split"] == "auto"
    run_stage(run, stage("splits"), progress=False)  # the notebook: the report
    m = run.metrics()["splits"]
    assert m["interaction_split_is_user_time"] == 1.0
    assert m["recommender_evaluated_users_user_time"] >= 10 * m["recommender_evaluated_users_global_time"] > 0, m
    assert m["recommender_evaluated_users"] == m["recommender_evaluated_users_user_time"] >= run.params["min_evaluated_users"]
    info = run.read_json("artifacts/splits/splits.json")
    n_global = int(m["recommender_evaluated_users_global_time"])
    assert f"a global time cut would evaluate {n_global:,} users, fewer than min_evaluated_users = 200" in info["interaction_split_reason"]
    assert info["few_users_warning"] == "" and 0 < info["interaction_leak"]["test_before_training_share"] <= 1
    html = " ".join((run.path/"html"/"02_splits.html").read_text(encoding="utf-8").split())
    assert "user_time" in html and f"would evaluate {n_global:,} users, fewer than min_evaluated_users" in html
    # the stored split keeps each user's time order, and its tuning folds step back through each user's history
    it = load_dataset(run)["interactions"]
    s = load_splits(run)
    check_interaction_split(it.merge(s["interactions"], on="interaction_id").set_index(it.index), it.merge(s["interactions"])["split"].to_numpy(),
                            s["interaction_time_folds"], "user_time")
    assert sorted(s["interaction_time_folds"].fold.unique()) == [0, 1]
    from thinkalike_ml.models import recommender_data
    folds = recommender_data(it, s).folds  # what the models stage tunes on: the per-user folds, each validating hundreds of users
    assert len(folds) == 2 and min(len(f.rows) for f in folds) >= 10 * n_global, [len(f.rows) for f in folds]
    with pytest.raises(LeakageError, match="must be strictly later"):  # it is not a global time order
        check_interaction_split(it, it.merge(s["interactions"])["split"].to_numpy(), s["interaction_time_folds"], "global_time")


def test_too_few_evaluated_users_warn_in_the_splits_and_evaluation_reports_and_in_list(tmp_path, long_files, capsys):
    from thinkalike_ml.evaluation import load_evaluation
    from thinkalike_ml.pipeline import main
    run = _files_run(tmp_path, long_files, "global", interaction_split="global_time")
    for s in ("splits", "features", "models", "evaluation"): execute_stage(run, s)
    m = run.metrics()
    n = m["evaluation"]["recommender_evaluated_users"]
    assert 0 < n < 200 and m["splits"]["recommender_evaluated_users"] < 200 and m["splits"]["interaction_split_is_global_time"] == 1.0
    assert "fewer than min_evaluated_users = 200" in run.read_json("artifacts/splits/splits.json")["few_users_warning"]
    flags = load_evaluation(run)["summary"]["flags"]
    assert any(f"averaged over {n:.0f} users, fewer than min_evaluated_users = 200" in f for f in flags), flags
    update_index(run, new_manifest(run, ["data", "splits", "features", "models", "evaluation"]), tmp_path/"reports")
    assert main(["list", "--reports-dir", str(tmp_path/"reports")]) == 0
    out = capsys.readouterr().out
    assert f"warning: recommender metrics averaged over {n:.0f} users, fewer than min_evaluated_users = 200 (evaluation)" in out, out
    # above the minimum there is no warning
    ok = _files_run(tmp_path, long_files, "ok", interaction_split="global_time", min_evaluated_users=int(n))
    execute_stage(ok, "splits")
    assert run.params["min_evaluated_users"] == 200 and ok.read_json("artifacts/splits/splits.json")["few_users_warning"] == ""


def _log(n_users=60, seed=0) -> pd.DataFrame:
    "Interactions of users who each arrive at a random day and stay about two weeks (so a global cut catches few)."
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 300, n_users)
    rows = [(f"u{u:02d}", f"c{rng.integers(0, 15)}", start[u] + rng.uniform(0, 14)) for u in range(n_users) for _ in range(rng.integers(3, 12))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "day"])
    return df.assign(interaction_id=[f"i{j:04d}" for j in range(len(df))],
                     timestamp=pd.Timestamp("2025-01-01") + pd.to_timedelta(df.pop("day"), unit="D"))


@pytest.mark.parametrize("strategy", INTERACTION_SPLITS)
def test_each_interaction_split_keeps_its_promise_and_a_leaky_split_is_caught(strategy):
    it = _log()
    params = dict(validation_fraction=0.15, test_fraction=0.15, n_time_folds=3, seed=0, user_holdout=0)
    split, folds = split_interactions(it, strategy, params)
    split = split.to_numpy()
    check_interaction_split(it, split, folds, strategy)  # its own promise holds
    leak = interaction_leak(it, split)
    if strategy == "global_time": assert leak == {"test_before_training_share": 0.0, "training_after_test_share": 0.0, "test_before_own_training_share": 0.0}
    if strategy == "user_time": assert leak["test_before_own_training_share"] == 0.0 and leak["test_before_training_share"] > 0.5
    if strategy == "user_random": assert leak["test_before_own_training_share"] > 0.3  # why it is optimistic
    # deliberately leaky cases
    other, message = {"global_time": ("user_time", "must be strictly later"), "user_time": ("user_random", "does not start after")}.get(strategy, (None, None))
    if other:  # another strategy's split (with its own folds) does not keep this one's promise
        leaky, leaky_folds = split_interactions(it, other, params)
        with pytest.raises(LeakageError, match=message): check_interaction_split(it, leaky.to_numpy(), leaky_folds, strategy)
    twice = pd.concat([it, it.iloc[:1]], ignore_index=True)  # one interaction in two splits
    with pytest.raises(LeakageError, match="in more than one split"):
        check_interaction_split(twice, np.append(split, "test" if split[0] != "test" else "train"), folds, strategy)
    test_row = it["interaction_id"][split == "test"].iloc[0]
    outside = pd.concat([folds, pd.DataFrame({"interaction_id": [test_row], "fold": [0], "role": ["train"]})], ignore_index=True)
    with pytest.raises(LeakageError, match="outside training"): check_interaction_split(it, split, outside, strategy)
    future = folds[folds.fold == 0].assign(role=lambda d: d.role.map({"train": "validation", "validation": "train"}))  # validate on the past
    if strategy != "user_random":
        with pytest.raises(LeakageError, match="fold 0"): check_interaction_split(it, split, future, strategy)


def test_user_time_holds_out_the_last_k_of_each_user_and_auto_keeps_the_protocols_of_synthetic_data_and_movietweetings():
    it = _log()
    params = dict(validation_fraction=0.15, test_fraction=0.15, n_time_folds=3, seed=0, user_holdout=2, min_evaluated_users=200)
    split = split_interactions(it, "user_time", params)[0]
    d = it.assign(split=split.to_numpy()).sort_values(["user_id", "timestamp"])
    for _, g in d.groupby("user_id"):
        expect = ["train"] * (len(g) - 4) + ["validation"] * 2 + ["test"] * 2 if len(g) >= 5 else ["train"] * len(g)
        assert g.split.tolist() == expect
    assert evaluated_users(it, split.to_numpy()) > 5 * evaluated_users(it, split_by_time(it, "timestamp", FR).to_numpy())
    for source in ("synthetic", "movietweetings"):
        chosen, why = choose_interaction_split(it, dict(params, source=source, interaction_split="auto"))
        assert chosen == "global_time" and f"source '{source}'" in why
    assert choose_interaction_split(it, dict(params, source="files", interaction_split="auto"))[0] == "user_time"
    assert choose_interaction_split(it, dict(params, source="files", interaction_split="auto", min_evaluated_users=1))[0] == "global_time"
    assert choose_interaction_split(it, dict(params, source="files", interaction_split="user_random"))[0] == "user_random"
    with pytest.raises(ValueError, match="parameter 'interaction_split'"):
        choose_interaction_split(it, dict(params, interaction_split="per_user"))
