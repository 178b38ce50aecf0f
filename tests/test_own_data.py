"""Your own data: any sensible subset of tables, declared columns, honest matcher splits, the export round trip, clear errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import DataError, DataQualityError, dataset_version, export_data, load_dataset, run_data_stage
from thinkalike_ml.fairness import FAIRNESS_SUMMARY
from thinkalike_ml.features import load_features, run_features_stage
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import (EXCLUDED, LeakageError, check_matcher_split, make_splits, run_splits_stage, split_suggestions,
                                  stratified_split)
from thinkalike_ml.stages import execute_stage

SMALL = dict(n_users=300, n_items=30, interactions_per_user=8.0, suggestions_per_user=8.0, n_trials=2, n_folds=3, n_time_folds=2,
             n_bootstrap=50, ab_simulations=10, n_explain=100, dataset_store="")
LATER = ("models", "evaluation", "fairness", "interpretability")


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-own-data-key")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


def _run(tmp_path, name, **overrides) -> tuple[RunDirectory, dict]:
    params = resolve_params(overrides={**SMALL, **overrides}, small=True)
    return RunDirectory.create(params, tmp_path/name), params


def _export(tmp_path, tables, **gen) -> dict:
    """The generator's raw tables as CSV files (through `export_data`), read back as frames to edit."""
    out = export_data(resolve_params(overrides={**SMALL, **gen}, small=True), tmp_path/"export", tables)
    return {t: pd.read_csv(p, dtype=str) for t, p in out["files"].items()}


def _write(tmp_path, frames: dict) -> dict:
    files = {}
    for t, df in frames.items():
        p = tmp_path/f"own_{t}.csv"
        df.to_csv(p, index=False)
        files[t] = str(p)
    return files


def _with_extras(frames: dict) -> dict:
    """Add the kind of columns a real event data set has: a field of study, an ethnicity, an event id per suggestion."""
    u, s = frames["users"].copy(), frames["suggestions"].copy()
    rng = np.random.default_rng(0)
    u["field"] = rng.choice(["math", "art", "law", "biology"], len(u))
    u["ethnicity"] = rng.choice(["group_a", "group_b", "group_c"], len(u))
    u["height"] = rng.normal(170, 10, len(u)).round(1).astype(str)
    s["event"] = "ev" + (pd.to_datetime(s["timestamp"]).dt.isocalendar().week.astype(int) // 4).astype(str)  # one event a month
    s["same_city"] = rng.integers(0, 2, len(s)).astype(str)
    return {**frames, "users": u, "suggestions": s}


DECLARED = dict(feature_columns={"users": {"field": "categorical", "height": "numeric"}, "suggestions": {"same_city": "numeric"}},
                sensitive_attributes=["gender", "region", "ethnicity"], group_column="event")


def test_users_and_suggestions_only_run_the_matcher_and_every_later_stage(tmp_path):
    files = _write(tmp_path, _with_extras(_export(tmp_path, ["users", "suggestions"])))
    run, params = _run(tmp_path, "matcher_only", source="files", files=files, matcher_split="group", **DECLARED)
    m = {s: execute_stage(run, s, params) for s in ("data", "splits", "features") + LATER}
    assert m["data"]["n_items"] == 0 and m["data"]["n_interactions"] == 0 and m["data"]["n_suggestions"] > 1000
    assert m["models"]["recommender_skipped"] == 1.0 and m["models"]["matcher_test_roc_auc"] > 0.6
    assert m["evaluation"]["recommender_skipped"] == 1.0 and "matcher_test_roc_auc_ci_low" in m["evaluation"]
    assert m["fairness"]["recommender_skipped"] == 1.0 and np.isfinite(m["fairness"]["matcher_dp_difference"])
    assert "ethnicity" in run.read_json(FAIRNESS_SUMMARY)["attributes"]  # a declared sensitive column reaches fairness
    assert m["interpretability"].get("matcher_skipped", 0.0) == 0.0
    f = load_features(run)
    assert {"same_field", "absdiff_height", "pair_same_city"} <= set(f["pair_columns"])
    assert not any("ethnicity" in c for c in f["pair_columns"] + list(f["user_features"].columns))  # sensitive: never a feature
    src = f["dictionary"].set_index("name")["source"]
    assert "declared in parameter 'feature_columns'" in src["same_field"] and "declared" in src["height"]


def test_users_and_interactions_only_run_the_recommender_with_lists_shorter_than_top_k(tmp_path):
    frames = _export(tmp_path, ["users", "interactions"], n_items=6)
    run, params = _run(tmp_path, "recommender_only", source="files", files=_write(tmp_path, frames), top_k=10)
    m = {s: execute_stage(run, s, params) for s in ("data", "splits", "features") + LATER}
    assert m["data"]["n_items"] <= 6 and m["data"]["n_suggestions"] == 0
    assert m["models"]["matcher_skipped"] == 1.0 and np.isfinite(m["models"]["recommender_test_ndcg"])
    from thinkalike_ml.models import load_predictions
    lists = load_predictions(run)["recommender"]
    assert lists.groupby(["model", "user_id"]).size().max() <= 6  # fewer recommendable items than top_k: shorter lists
    assert m["evaluation"]["matcher_skipped"] == 1.0 and np.isfinite(m["evaluation"]["recommender_test_ndcg"])
    assert m["fairness"]["matcher_skipped"] == 1.0 and m["interpretability"]["matcher_skipped"] == 1.0


def test_declared_columns_change_the_inputs_and_undeclared_ones_are_dropped_naming_the_parameter(tmp_path):
    frames = _with_extras(_export(tmp_path, ["users", "suggestions"]))
    files = _write(tmp_path, frames)
    cols = {}
    for name, extra in (("plain", {}), ("declared", DECLARED), ("requested", dict(DECLARED, feature_columns={"users": {"ethnicity": "categorical"}}))):
        run, params = _run(tmp_path, name, source="files", files=files, matcher_split="stratified", **extra)
        for s in ("data", "splits", "features"): execute_stage(run, s, params)
        f = load_features(run)
        cols[name] = (set(f["pair_columns"]), set(f["user_features"].columns))
        if name == "plain":
            q = run.read_table("tables/data_quality.parquet")
            msg = " ".join(q[q.rule == "known columns"].message)
            assert "'field'" in msg and "declare it in parameter 'feature_columns'" in msg and "'sensitive_attributes'" in msg
            assert "field" not in load_dataset(run)["users"]
        if name == "declared": assert "ethnicity" in load_dataset(run)["users"]  # kept for fairness
    assert cols["declared"][0] - cols["plain"][0] >= {"same_field", "absdiff_height", "min_height", "max_height", "pair_same_city"}
    assert any(c.startswith("field=") for c in cols["declared"][1]) and "height" in cols["declared"][1]
    assert not any("ethnicity" in c for c in cols["declared"][0] | cols["declared"][1])
    assert "same_ethnicity" in cols["requested"][0] and any(c.startswith("ethnicity=") for c in cols["requested"][1])


def _synthetic_suggestions(tmp_path):
    run, params = _run(tmp_path, "syn")
    run_data_stage(run, params)
    t = load_dataset(run)
    s = t["suggestions"]
    t["suggestions"] = s.assign(event="ev" + (s.timestamp.dt.day_of_year // 14).astype(str))
    return t, params


@pytest.mark.parametrize("strategy", ["stratified", "time", "group", "users"])
def test_each_matcher_split_keeps_its_promise_and_reports_user_overlap(tmp_path, strategy):
    t, params = _synthetic_suggestions(tmp_path)
    params = dict(params, matcher_split=strategy, group_column="event")
    splits = make_splits(t, params)  # asserts the strategy's leakage checks
    s = t["suggestions"].merge(splits["suggestions"], on="suggestion_id")
    assert set(s.split) <= {"train", "validation", "test", EXCLUDED} and (s.split == "test").sum() > 50
    roles = splits["suggestion_folds"]
    assert set(roles.role) == {"train", "validation"} and roles.fold.nunique() >= 2
    from thinkalike_ml.splits import user_overlap
    o = user_overlap(s, s.split.to_numpy())
    seen = o["test_users_seen_in_train_share"]
    if strategy == "users": assert seen == 0 and o["excluded_share"] > 0.3
    else: assert seen > 0.5  # users recur in the synthetic suggestions: every other strategy shows them again at test time


def test_a_leaky_split_is_caught_by_each_strategys_check(tmp_path):
    t, params = _synthetic_suggestions(tmp_path)
    s = t["suggestions"]
    leaky = stratified_split(s, "accepted", {"train": 0.7, "validation": 0.15, "test": 0.15}, 0).to_numpy()  # random rows
    _, folds = split_suggestions(s, dict(params, matcher_split="stratified"))
    for strategy, message in (("time", "must be strictly later"), ("group", "groups appear in more than one split"),
                              ("users", "users appear in more than one split")):
        with pytest.raises(LeakageError, match=message):
            check_matcher_split(s, leaky, folds, strategy, "event")


def test_the_time_split_is_the_default_and_its_tuning_folds_chain_forward(tmp_path):
    run, params = _run(tmp_path, "default")
    assert params["matcher_split"] == "time"
    run_data_stage(run, params)
    m = run_splits_stage(run, params)
    assert m["matcher_split_is_time"] == 1.0 and 0 <= m["suggestions_test_users_seen_in_train_share"] <= 1
    t = load_dataset(run)["suggestions"].set_index("suggestion_id")
    from thinkalike_ml.splits import load_splits
    for _, g in load_splits(run)["suggestion_folds"].groupby("fold"):
        ts = t.timestamp.reindex(g.suggestion_id).to_numpy()
        assert ts[g.role.to_numpy() == "train"].max() < ts[g.role.to_numpy() == "validation"].min()


def test_export_data_round_trip_gives_the_same_version_and_the_same_metrics(tmp_path, monkeypatch):
    from thinkalike_ml.pipeline import main
    args = ["export-data", "--out", str(tmp_path/"exported"), "--small"] + [a for k, v in SMALL.items() for a in ("-p", k, str(v))]
    assert main(args) == 0
    import yaml
    fp = yaml.safe_load((tmp_path/"exported"/"params.yaml").read_text())
    assert fp["source"] == "files" and set(fp["files"]) == {"users", "items", "interactions", "suggestions"}
    syn, p_syn = _run(tmp_path, "synthetic")
    from thinkalike_ml.data import synthetic_pseudonym_key
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", synthetic_pseudonym_key(p_syn["seed"]).decode())
    assert fp["interaction_split"] == "global_time"  # the params file keeps the synthetic protocol ('auto' could choose otherwise on files)
    own, p_own = _run(tmp_path, "files", source="files", files=fp["files"], interaction_split=fp["interaction_split"])
    m = {}
    for run, params in ((syn, p_syn), (own, p_own)):
        m[run.path.parent.name] = {s: execute_stage(run, s, params) for s in ("data", "splits", "features", "models")}
    assert dataset_version(syn)["hash"] == dataset_version(own)["hash"]
    timing = ("seconds", "per_second", "peak", "rss", "oracle", "new_version", "users_without_consent", "alerts_system")
    a, b = ({k: v for k, v in m[n]["models"].items() if not any(x in k for x in timing)} for n in ("synthetic", "files"))
    assert a.keys() == b.keys() and len(a) > 20
    for k in a: assert a[k] == pytest.approx(b[k], abs=1e-9), k


BAD = {
    "group column missing": (dict(group_column="meetup"), {}, "table 'suggestions': column 'meetup' is declared in parameter 'group_column'"),
    "sensitive column missing": (dict(sensitive_attributes=["gender", "religion"]), {}, "table 'users': column 'religion' is declared in parameter 'sensitive_attributes'"),
    "text in a declared numeric column": (dict(feature_columns={"users": {"height": "numeric"}}), {"users": {"height": "tall"}},
                                          "table 'users', column 'height': expected numbers, found 'tall'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_name_the_table_column_and_parameter(tmp_path, case):
    extra, change, message = BAD[case]
    frames = _with_extras(_export(tmp_path, ["users", "suggestions"]))
    for t, cols in change.items(): frames[t] = frames[t].assign(**{c: v for c, v in cols.items()}).copy()
    if case == "text in a declared numeric column": frames["users"].loc[3:, "height"] = "170"
    run, params = _run(tmp_path, case.replace(" ", "_"), source="files", files=_write(tmp_path, frames), **extra)
    with pytest.raises(DataError) as e: run_data_stage(run, params)
    assert message in str(e.value)
    if case == "text in a declared numeric column": assert "parameter 'feature_columns'" in str(e.value)


def test_a_suggestion_naming_unknown_users_is_an_error_naming_the_table_column_and_parameter(tmp_path):
    frames = _export(tmp_path, ["users", "suggestions"])
    s = frames["suggestions"]
    s.loc[: len(s) // 5, "user_b"] = "U_NOBODY"
    run, params = _run(tmp_path, "unknown_user", source="files", files=_write(tmp_path, frames))
    with pytest.raises(DataQualityError) as e: run_data_stage(run, params)
    assert "table 'suggestions', column 'user_b', rule 'refers to a known user'" in str(e.value) and "parameter 'files'" in str(e.value)


def test_a_stage_with_nothing_to_do_says_so_in_the_manifest(tmp_path):
    from thinkalike_ml.pipeline import _note_nothing_to_do
    from thinkalike_ml.stages import stage
    run, _ = _run(tmp_path, "note")
    run.record_metrics("models", {"matcher_skipped": 1.0, "recommender_test_ndcg": 0.3})
    entry = {}
    _note_nothing_to_do(run, stage("models"), entry)
    assert entry == {"nothing_to_do": ["matcher"]}
    run.record_metrics("evaluation", {"matcher_test_roc_auc": 0.8})
    _note_nothing_to_do(run, stage("evaluation"), entry := {})
    assert entry == {}


def test_value_categories_are_read_from_the_data(tmp_path):
    frames = _export(tmp_path, ["users", "suggestions"])
    u = frames["users"]
    keep = [c for c in u.columns if not c.startswith(("value_importance_", "value_position_"))]
    rng = np.random.default_rng(1)
    u = u[keep].assign(value_importance_Care=rng.uniform(0, 1, len(u)).astype(str), value_position_Care=rng.uniform(-1, 1, len(u)).astype(str),
                       value_importance_Craft=rng.uniform(0, 1, len(u)).astype(str), value_position_Craft=rng.uniform(-1, 1, len(u)).astype(str))
    run, params = _run(tmp_path, "categories", source="files", files=_write(tmp_path, {**frames, "users": u}))
    for s in ("data", "splits", "features"): execute_stage(run, s, params)
    f = load_features(run)
    assert {"agree_Care", "care_Craft"} <= set(f["pair_columns"]) and not any(c.endswith("_Privacy") for c in f["pair_columns"])
    assert {"value_position_Care", "stance_Craft"} <= set(f["user_features"].columns)
