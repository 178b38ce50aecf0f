"""The splits stage on the Dask engine gives the pandas engine's splits: the same tables, comparison, summary and metrics."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import ENGINE_SMALL, local_dask_cluster
from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import DATASET_RECORD, dataset_version, load_dataset, run_data_stage
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import (INTERACTION_SPLITS_TABLE, SPLITS_DIR, interaction_splits_dask, load_splits, run_splits_stage,
                                  split_interactions)

SMALL = ENGINE_SMALL


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster for the module (the runs connect to it through parameter `dask_scheduler`)."""
    with local_dask_cluster() as address: yield address


@pytest.fixture(scope="module")
def versions(tmp_path_factory, scheduler):
    """The small profile's dataset version written by each engine's data stage: the dask one as folders of parts, the pandas one as files."""
    mp = pytest.MonkeyPatch()
    mp.setenv("THINKALIKE_PSEUDONYM_KEY", "test-engine-key")
    root, out = tmp_path_factory.mktemp("versions"), {}
    for engine in ("dask", "pandas"):
        extra = dict(engine="dask", dask_scheduler=scheduler) if engine == "dask" else {}
        params = resolve_params(overrides={**SMALL, **extra}, small=True)
        run = RunDirectory.create(params, root/engine)
        run_data_stage(run, params)
        out[engine] = dataset_version(run)
    yield out
    mp.undo()


def _split(tmp_path, name: str, record: dict, **overrides) -> tuple[RunDirectory, dict]:
    "Run the splits stage in a new run on a given dataset version record."
    params = resolve_params(overrides={**SMALL, **overrides}, small=True)
    run = RunDirectory.create(params, tmp_path/name)
    run.write_json(DATASET_RECORD, record)
    return run, run_splits_stage(run, params)


@pytest.mark.parametrize("strategy,version,extra", [("global_time", "dask", {}), ("user_time", "dask", {}), ("user_random", "dask", {}),
                                                    ("user_time", "dask", {"user_holdout": 2, "n_time_folds": 3}),
                                                    ("user_random", "pandas", {"seed": 11}),
                                                    # 'auto' on own files: a global cut evaluates fewer users than the minimum, so user_time
                                                    ("auto", "dask", {"source": "files", "min_evaluated_users": 10**6,
                                                                      "files": {t: f"{t}.csv" for t in ("users", "interactions", "suggestions")}})])
def test_dask_splits_equal_the_pandas_splits(tmp_path, scheduler, versions, strategy, version, extra, monkeypatch):
    from thinkalike_ml import splits
    calls = []
    def counted(*a, **kw):
        calls.append(1)
        return interaction_splits_dask(*a, **kw)
    monkeypatch.setattr(splits, "interaction_splits_dask", counted)
    record = versions[version]
    parts = Path(record["path"])/"interactions"
    assert (parts.is_dir() and len(list(parts.glob("part-*.parquet"))) > 2) == (version == "dask")  # several parts, or one file
    kw = dict(interaction_split=strategy, **extra)
    pr, pm = _split(tmp_path, "pandas", record, **kw)
    dr, dm = _split(tmp_path, "dask", record, engine="dask", dask_scheduler=scheduler, **kw)
    assert len(calls) == 1  # the dask run split the interactions on the workers, the pandas run did not
    a, b = load_splits(pr), load_splits(dr)
    for t in a: pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=t)
    assert set(a["interactions"].split) == {"train", "validation", "test"} and a["interaction_time_folds"]["fold"].nunique() > 1
    for t in (INTERACTION_SPLITS_TABLE, "tables/split_summary.parquet"):
        pd.testing.assert_frame_equal(pr.read_table(t), dr.read_table(t), check_exact=True, obj=t)
    assert pm == dm
    info = pr.read_json(f"{SPLITS_DIR}/splits.json")
    assert info == dr.read_json(f"{SPLITS_DIR}/splits.json")
    assert info["interaction_split"] == (strategy if strategy != "auto" else "user_time") and info["interaction_split_requested"] == strategy
    if strategy == "user_random":  # the draws are per row: a different seed gives other splits on both engines
        _, om = _split(tmp_path, "other", record, engine="dask", dask_scheduler=scheduler, **{**kw, "seed": kw.get("seed", 42) + 1})
        assert om != dm


def test_bad_interactions_raise_the_same_error_on_both_engines(tmp_path, scheduler, versions):
    from distributed import Client
    src = Path(versions["dask"]["path"])
    bad = tmp_path/"bad"
    shutil.copytree(src, bad)
    part = sorted((bad/"interactions").glob("part-*.parquet"))[1]
    df = pd.read_parquet(part)
    df.loc[df.index[[3, 7]], "timestamp"] = pd.NaT  # two rows without a time, in the second part
    df.to_parquet(part, index=False)
    it = load_dataset_from(bad)
    params = resolve_params(overrides=SMALL, small=True)
    with pytest.raises(ValueError) as a: split_interactions(it, "global_time", params)
    with Client(scheduler) as c, pytest.raises(ValueError) as b: interaction_splits_dask(c, bad, params)
    assert str(a.value) == str(b.value) == "column 'timestamp': 2 rows have no time; cannot split by time"
    with pytest.raises(ValueError) as a: split_interactions(it, "by_item", params)
    with Client(scheduler) as c, pytest.raises(ValueError) as b: interaction_splits_dask(c, src, {**params, "interaction_split": "by_item"})
    assert str(a.value) == str(b.value) and "parameter 'interaction_split': unknown strategy 'by_item'" in str(a.value)
    shutil.rmtree(bad/"interactions")
    with Client(scheduler) as c, pytest.raises(FileNotFoundError, match="table 'interactions' is missing"): interaction_splits_dask(c, bad, params)


def load_dataset_from(path: Path) -> pd.DataFrame:
    from thinkalike_ml.data import read_version
    return read_version(path)["interactions"]


def test_the_per_user_checks_on_a_partition_catch_a_leak(versions):
    from thinkalike_ml.splits import LeakageError, SPLITS, _label_part, _time_cuts, _user_time_part, split_fractions, _check_fractions
    it = load_dataset_from(Path(versions["dask"]["path"]))
    fr = split_fractions(0.15, 0.15)
    parts = _check_fractions(fr)
    df = _label_part(it.drop(columns="interaction_id").assign(_pos=np.arange(len(it)), _u=0.5), parts, _time_cuts(it.timestamp, [0.7, 0.15, 0.15]), fr, 0)
    pos, codes = _user_time_part(df, 2)  # the split as made passes
    assert len(pos) == (df._user_time != SPLITS.index("test")).sum() and set(np.unique(codes)) == {0, 1, 2}
    flipped = df.assign(_user_time=df._user_time.map({0: 2, 1: 1, 2: 0}).astype("int8"))  # each user's latest rows train, earliest test
    with pytest.raises(LeakageError, match="interaction_split 'user_time'.*does not start after"): _user_time_part(flipped, 2)


def _with_groups(tmp_path, record: dict) -> dict:
    """A copy of a dataset version whose suggestions carry group columns: 'event' (a two-week period, as in test_own_data), 'few' (two
    groups) and 'holes' (an event with rows missing); the synthetic data have no group column of their own."""
    src = Path(record["path"])
    dst = tmp_path/f"groups_{src.name}"
    shutil.copytree(src, dst)
    files = [dst/"suggestions.parquet"] if (dst/"suggestions.parquet").is_file() else sorted((dst/"suggestions").glob("part-*.parquet"))
    for f in files:
        df = pd.read_parquet(f)
        event = "ev" + (df.timestamp.dt.day_of_year // 14).astype(str)
        df = df.assign(event=event, few=np.where(df.accepted == 1, "a", "b"), holes=event.where(df.index % 50 != 7))
        df.to_parquet(f, index=False)
    return {**record, "path": str(dst)}


@pytest.mark.parametrize("strategy,version", [("stratified", "dask"), ("time", "dask"), ("group", "dask"), ("users", "dask"),
                                              ("group", "pandas"), ("users", "pandas")])
def test_dask_suggestion_splits_equal_the_pandas_ones(tmp_path, scheduler, versions, strategy, version, monkeypatch):
    from thinkalike_ml import splits
    from thinkalike_ml.splits import EXCLUDED, suggestion_splits_dask
    calls = []
    def counted(*a, **kw):
        calls.append(1)
        return suggestion_splits_dask(*a, **kw)
    monkeypatch.setattr(splits, "suggestion_splits_dask", counted)
    record = _with_groups(tmp_path, versions[version])
    parts = Path(record["path"])/"suggestions"
    assert (parts.is_dir() and len(list(parts.glob("part-*.parquet"))) > 2) == (version == "dask")  # several parts, or one file
    kw = dict(matcher_split=strategy, group_column="event", interaction_split="global_time")
    pr, pm = _split(tmp_path, "pandas", record, **kw)
    dr, dm = _split(tmp_path, "dask", record, engine="dask", dask_scheduler=scheduler, **kw)
    assert len(calls) == 1  # the dask run split the suggestions on the workers, the pandas run did not
    a, b = load_splits(pr), load_splits(dr)
    for t in a: pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=t)
    pd.testing.assert_frame_equal(pr.read_table("tables/split_summary.parquet"), dr.read_table("tables/split_summary.parquet"), check_exact=True)
    assert pm == dm
    info = pr.read_json(f"{SPLITS_DIR}/splits.json")
    assert info == dr.read_json(f"{SPLITS_DIR}/splits.json") and info["matcher_split"] == strategy
    s, folds = a["suggestions"], a["suggestion_folds"]
    assert {"train", "validation", "test"} <= set(s.split) and folds["fold"].nunique() > 1 and set(folds.role) == {"train", "validation"}
    assert ((s.split == EXCLUDED).mean() > 0.3) == (strategy == "users")  # a user-disjoint split leaves pairs out
    if strategy == "group":  # the groups decided: each event in one split
        ev = pd.read_parquet(Path(record["path"])/("suggestions" if version == "dask" else "suggestions.parquet"), columns=["suggestion_id", "event"])
        assert ev.merge(s, on="suggestion_id").groupby("event").split.nunique().max() == 1


@pytest.mark.parametrize("overrides,message", [
    (dict(matcher_split="by_event"), "parameter 'matcher_split': unknown strategy 'by_event'"),
    (dict(matcher_split="group", group_column=""), "parameter 'matcher_split' is 'group', which needs parameter 'group_column'"),
    (dict(matcher_split="group", group_column="meetup"), "table 'suggestions' has no column 'meetup' (parameter 'group_column')"),
    (dict(matcher_split="group", group_column="few"), "column 'few' (parameter 'group_column'): 2 groups; a group split needs at least 3"),
    (dict(matcher_split="group", group_column="holes"), "column 'holes' (parameter 'group_column'): "),
    (dict(matcher_split="users", validation_fraction=0.5, test_fraction=0.6), "split fractions must be positive"),
])
def test_a_bad_matcher_split_raises_the_same_error_on_both_engines(tmp_path, scheduler, versions, overrides, message):
    from distributed import Client
    from thinkalike_ml.data import read_version
    from thinkalike_ml.splits import split_suggestions, suggestion_splits_dask
    record = _with_groups(tmp_path, versions["dask"])
    params = {**resolve_params(overrides=SMALL, small=True), **overrides}  # set after validation: the splits stage's own checks
    with pytest.raises(ValueError) as a: split_suggestions(read_version(record["path"])["suggestions"], params)
    with Client(scheduler) as c, pytest.raises(ValueError) as b: suggestion_splits_dask(c, record["path"], params)
    assert str(a.value) == str(b.value) and message in str(a.value)


def test_without_interactions_the_suggestions_still_split_on_the_workers(tmp_path, scheduler, versions, monkeypatch):
    """Own data of users and suggestions only: the dask engine splits the suggestions on the workers, the empty interactions in pandas."""
    from thinkalike_ml import splits
    from thinkalike_ml.data import empty_interactions
    from thinkalike_ml.splits import suggestion_splits_dask
    calls = []
    def counted(*a, **kw):
        calls.append(1)
        return suggestion_splits_dask(*a, **kw)
    monkeypatch.setattr(splits, "suggestion_splits_dask", counted)
    monkeypatch.setattr(splits, "interaction_splits_dask", lambda *a, **kw: pytest.fail("no interactions to split on the workers"))
    src = Path(versions["dask"]["path"])
    dst = tmp_path/"no_interactions"
    shutil.copytree(src, dst)
    shutil.rmtree(dst/"interactions")
    empty_interactions().to_parquet(dst/"interactions.parquet", index=False)
    record = {**versions["dask"], "path": str(dst), "row_counts": {**versions["dask"]["row_counts"], "interactions": 0}}
    pr, pm = _split(tmp_path, "pandas", record, matcher_split="users")
    dr, dm = _split(tmp_path, "dask", record, matcher_split="users", engine="dask", dask_scheduler=scheduler)
    assert len(calls) == 1
    a, b = load_splits(pr), load_splits(dr)
    for t in a: pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=t)
    assert len(a["interactions"]) == 0 and len(a["suggestions"]) > 1000
    pd.testing.assert_frame_equal(pr.read_table("tables/split_summary.parquet"), dr.read_table("tables/split_summary.parquet"), check_exact=True)
    assert pm == dm and pr.read_json(f"{SPLITS_DIR}/splits.json") == dr.read_json(f"{SPLITS_DIR}/splits.json")
