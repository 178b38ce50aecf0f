"""The Dask engine gives what the pandas engine gives: the same dataset hash, quality table, splits, features and scores."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import ENGINE_SMALL, local_dask_cluster
from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import (DataError, DataQualityError, dataset_hash, dataset_version, export_data, load_dataset, load_truth, read_version,
                                run_data_stage, table_summary, write_version)
from thinkalike_ml.features import load_features, run_features_stage
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import load_splits, run_splits_stage

SMALL = ENGINE_SMALL


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster for the module (the runs connect to it through parameter `dask_scheduler`)."""
    with local_dask_cluster() as address: yield address


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-engine-key")


def _run(tmp_path, name, **overrides) -> tuple[RunDirectory, dict]:
    params = resolve_params(overrides={**SMALL, **overrides}, small=True)
    return RunDirectory.create(params, tmp_path/name), params


def _both(tmp_path, scheduler, **overrides) -> dict:
    out = {}
    for engine in ("pandas", "dask"):
        extra = dict(engine="dask", dask_scheduler=scheduler) if engine == "dask" else {}
        out[engine] = _run(tmp_path, engine, **overrides, **extra)
    return out


def test_data_splits_and_features_are_identical_on_both_engines(tmp_path, scheduler, monkeypatch):
    monkeypatch.setattr("thinkalike_ml.data.GEN_BLOCK_USERS", 64)  # generation in several blocks of users (on the workers with dask)
    runs = _both(tmp_path, scheduler, dirty_rate=0.02)  # dirty rows: quality rules repair rows in several partitions
    m = {e: run_data_stage(run, p) for e, (run, p) in runs.items()}
    (pr, _), (dr, _) = runs["pandas"], runs["dask"]
    a, b = dataset_version(pr), dataset_version(dr)
    assert a["hash"] == b["hash"] and a["version"] == b["version"]
    for k in ("row_counts", "consent", "quality"): assert a[k] == b[k], k
    assert a["quality"]["warn"] > 0 and a["consent"]["users_without_consent"] > 0  # the comparison covers repairs and consent
    pd.testing.assert_frame_equal(pr.read_table("tables/data_quality.parquet"), dr.read_table("tables/data_quality.parquet"))
    ta, tb = load_dataset(pr), load_dataset(dr)
    for t in ta: pd.testing.assert_frame_equal(ta[t], tb[t])
    sheet = lambda run: re.sub(r"created [^\n]*", "", (run.path/"datasheet.md").read_text(encoding="utf-8"))
    assert sheet(pr) == sheet(dr)
    # the dask engine's workers wrote the big tables as folders of parts; the manifests (counts, schema) agree
    pv, dv = Path(a["path"]), Path(b["path"])
    for t in ("users", "interactions", "suggestions"):
        assert (pv/f"{t}.parquet").is_file() and not (dv/f"{t}.parquet").exists()
        assert len(list((dv/t).glob("part-*.parquet"))) > 1, t
    manifest = lambda v: {k: x for k, x in json.loads((v/"manifest.json").read_text()).items() if k != "created"}
    assert manifest(pv) == manifest(dv)
    drop = ("seconds",)
    assert {k: v for k, v in m["pandas"].items() if k not in drop} == {k: v for k, v in m["dask"].items() if k not in drop}
    ua, ub = load_truth(pr), load_truth(dr)  # the truth of the kept suggestions, filtered on the workers and streamed into one file
    for t in ("suggestions", "user_factors", "item_factors"): pd.testing.assert_frame_equal(ua[t], ub[t])
    assert ua["info"] == ub["info"] and 0 < len(ua["suggestions"]) < m["pandas"]["n_suggestions"] + 1
    for run, p in runs.values(): run_splits_stage(run, p)
    sa, sb = load_splits(pr), load_splits(dr)
    for t in sa: pd.testing.assert_frame_equal(sa[t], sb[t])
    for run, p in runs.values(): run_features_stage(run, p)
    fa, fb = load_features(pr), load_features(dr)
    pd.testing.assert_frame_equal(fa["pair_features"], fb["pair_features"], check_exact=True)
    pd.testing.assert_frame_equal(fa["user_features"], fb["user_features"], check_exact=True)
    assert len(fa["pair_features"]) > 2 * SMALL["dask_partition_rows"]  # more than one block of pairs


@pytest.mark.slow  # the raw tables with the tree sampler are compared in the default tier (test_generation_on_dask_...)
def test_the_data_stage_with_the_tree_sampler_gives_the_same_version_on_both_engines(tmp_path, scheduler, monkeypatch):
    """Generation on the workers with the tree sampler, dirty rows and long histories: the version (hash, manifest counts,
    quality, truth) is the pandas engine's."""
    monkeypatch.setattr("thinkalike_ml.data.GEN_BLOCK_USERS", 64)
    runs = _both(tmp_path, scheduler, interaction_sampler="tree", dirty_rate=0.03, activity_days=30.0)
    m = {e: run_data_stage(run, p) for e, (run, p) in runs.items()}
    (pr, _), (dr, _) = runs["pandas"], runs["dask"]
    a, b = dataset_version(pr), dataset_version(dr)
    assert a["hash"] == b["hash"] and a["quality"] == b["quality"] and a["quality"]["warn"] > 0
    assert {k: v for k, v in m["pandas"].items() if k != "seconds"} == {k: v for k, v in m["dask"].items() if k != "seconds"}
    for t in ("suggestions", "user_factors", "item_factors"):
        pd.testing.assert_frame_equal(pr.read_table(f"artifacts/data/truth/{t}.parquet"), dr.read_table(f"artifacts/data/truth/{t}.parquet"))


@pytest.mark.parametrize("extra", [dict(), dict(dirty_rate=0.05), dict(interaction_sampler="tree", dirty_rate=0.02, activity_days=7.0)],
                         ids=["clean", "dirty", "tree-dirty-long"])
def test_generation_on_dask_gives_the_pandas_tables_whatever_the_order_of_the_blocks(monkeypatch, scheduler, extra):
    """The interactions drawn, ordered, numbered, rated and corrupted on the workers (kept there as partitions) are the pandas
    engine's raw table cut into pieces; so are the blocks run in another order, or gathered into the client."""
    from distributed import Client
    from thinkalike_ml import data
    from thinkalike_ml.engine import assemble_interactions_dask, map_blocks_dask
    monkeypatch.setattr(data, "GEN_BLOCK_USERS", 37)  # 9 blocks of users, over both workers
    kw = dict(n_users=300, n_items=30, interactions_per_user=8.0, seed=5, **extra)
    a = data.generate_raw(**kw)[0]
    with Client(scheduler) as c:
        b = data.generate_raw(**kw, mapper=map_blocks_dask(c))[0]
        kept = data.generate_raw(**kw, assemble=assemble_interactions_dask(c, rows=500))[0]
        parts = kept["interactions"]
        assert isinstance(parts, list) and len(parts) >= 5  # futures of partitions, not a frame
        pieces = c.gather(parts)
    backwards = lambda fn, args, shared: data.map_blocks(fn, args[::-1], shared)[::-1]  # another order of running the blocks
    r = data.generate_raw(**kw, mapper=backwards)[0]
    for t in a:
        pd.testing.assert_frame_equal(a[t], b[t])
        pd.testing.assert_frame_equal(a[t], r[t])
        if t != "interactions": pd.testing.assert_frame_equal(a[t], kept[t])
    assert max(len(p) for p in pieces) < 2 * 500  # the time ranges come out about even
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), a["interactions"])
    assert a["interactions"].user_id.nunique() > 250
    if extra.get("dirty_rate"):  # the dirty rows are there: unknown communities, duplicated rows
        assert (a["interactions"].item_id == "C_UNKNOWN").any() and a["interactions"].interaction_id.duplicated().any()
    else: assert a["interactions"].interaction_id.is_unique


@pytest.mark.parametrize("extra", [dict(), dict(dirty_rate=0.05), dict(interaction_sampler="tree", dirty_rate=0.02, activity_days=7.0)],
                         ids=["clean", "dirty", "tree-dirty-long"])
def test_generation_on_dask_gives_the_pandas_suggestions_and_truth(monkeypatch, scheduler, extra):
    """The suggestions and their truth drawn in blocks (each from the main stream's states at its first row), put in time order,
    numbered and corrupted on the workers, kept there as partitions, are the pandas engine's tables cut into pieces."""
    from distributed import Client
    from thinkalike_ml import data
    from thinkalike_ml.engine import assemble_suggestions_dask
    monkeypatch.setattr(data, "GEN_BLOCK_SUGGESTIONS", 211)  # 12 blocks of suggestions, over both workers
    kw = dict(n_users=300, n_items=30, interactions_per_user=8.0, seed=5, **extra)
    a, ta = data.generate_raw(**kw)
    with Client(scheduler) as c:
        kept, tk = data.generate_raw(**kw, assemble_sugg=assemble_suggestions_dask(c, rows=500))
        assert isinstance(kept["suggestions"], list) and isinstance(tk["suggestions"], list) and len(tk["suggestions"]) >= 4
        pieces, truth = c.gather(kept["suggestions"]), c.gather(tk["suggestions"])
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), a["suggestions"])
    pd.testing.assert_frame_equal(pd.concat(truth, ignore_index=True), ta["suggestions"])
    for t in ("users", "items", "interactions"): pd.testing.assert_frame_equal(kept[t], a[t])
    assert tk["info"] == ta["info"] and max(len(p) for p in truth) < 2 * 500  # the time ranges come out about even
    s = a["suggestions"]
    if extra.get("dirty_rate"): assert (s.user_b == "U_UNKNOWN").any() and (s.accepted == 2).any() and s.suggestion_id.duplicated().any()
    else: assert s.suggestion_id.is_unique and (s.user_a != s.user_b).all() and s.timestamp.is_monotonic_increasing


def _export(tmp_path) -> dict:
    out = export_data(resolve_params(overrides=SMALL, small=True), tmp_path/"export", ["users", "interactions", "suggestions"])
    return {t: pd.read_csv(p, dtype=str) for t, p in out["files"].items()}


def test_own_files_as_a_parquet_folder_and_a_glob_give_the_version_of_the_single_files(tmp_path, scheduler):
    frames = _export(tmp_path)
    single = {}
    for t, df in frames.items():
        single[t] = str(tmp_path/f"{t}.csv")
        df.to_csv(single[t], index=False)
    (tmp_path/"users").mkdir()
    u = frames["users"]
    half = len(u) // 2
    u.iloc[:half].to_parquet(tmp_path/"users"/"part-0.parquet", index=False)
    u.iloc[half:].to_parquet(tmp_path/"users"/"part-1.parquet", index=False)
    it = frames["interactions"]
    for k, part in enumerate(np.array_split(np.arange(len(it)), 3)): it.iloc[part].to_csv(tmp_path/f"events-{k}.csv", index=False)
    split = {"users": str(tmp_path/"users"), "interactions": str(tmp_path/"events-*.csv"), "suggestions": single["suggestions"]}
    pr, pp = _run(tmp_path, "pandas", source="files", files=single)
    dr, dp = _run(tmp_path, "dask", source="files", files=split, engine="dask", dask_scheduler=scheduler)
    fr, fp = _run(tmp_path, "pandas_folders", source="files", files=split)  # the pandas engine reads folders and globs too
    for run, p in ((pr, pp), (dr, dp), (fr, fp)): run_data_stage(run, p)
    assert dataset_version(pr)["hash"] == dataset_version(dr)["hash"] == dataset_version(fr)["hash"]
    bad = _run(tmp_path, "none", source="files", files={**split, "interactions": str(tmp_path/"nothing-*.csv")}, engine="dask", dask_scheduler=scheduler)
    with pytest.raises(DataError, match="table 'interactions': no file matches"): run_data_stage(*bad)


def _error(tmp_path, scheduler, files, engine, exc):
    extra = dict(engine="dask", dask_scheduler=scheduler) if engine == "dask" else {}
    run, p = _run(tmp_path, f"err_{engine}_{len(list(tmp_path.iterdir()))}", source="files", files=files, **extra)
    with pytest.raises(exc) as e: run_data_stage(run, p)
    return str(e.value)


def test_errors_name_the_same_count_and_first_row_on_both_engines(tmp_path, scheduler):
    frames = _export(tmp_path)
    u = frames["users"].copy()
    u.loc[[5, len(u) - 3], "age"] = "old"  # in the first and the last partition of the input
    u.to_csv(tmp_path/"bad_users.csv", index=False)
    frames["suggestions"].to_csv(tmp_path/"s.csv", index=False)
    files = {"users": str(tmp_path/"bad_users.csv"), "suggestions": str(tmp_path/"s.csv")}
    a, b = (_error(tmp_path, scheduler, files, e, DataError) for e in ("pandas", "dask"))
    assert a == b and "column 'age': expected numbers, found 'old' in 2 rows (first at row 5)" in a
    s = frames["suggestions"].copy()
    s.loc[s.index[-len(s) // 5:], "user_b"] = "U_NOBODY"  # over the 5% that may be repaired, in several partitions
    s.to_csv(tmp_path/"bad_s.csv", index=False)
    frames["users"].to_csv(tmp_path/"u.csv", index=False)
    files = {"users": str(tmp_path/"u.csv"), "suggestions": str(tmp_path/"bad_s.csv")}
    a, b = (_error(tmp_path, scheduler, files, e, DataQualityError) for e in ("pandas", "dask"))
    assert a == b and "rule 'refers to a known user'" in a


@pytest.mark.slow
def test_batch_scoring_on_dask_writes_what_the_one_process_command_writes(tmp_path, scheduler):
    from thinkalike_ml.engine import score_file_dask
    from thinkalike_ml.serving import load_served, score_file
    from thinkalike_ml.stages import open_stage
    run, _ = open_stage(None, "evaluation")
    served = load_served(str(run.path))
    pf = load_features(run)["pair_features"]
    df = pf[["suggestion_id", *served.columns]].copy()
    df.loc[7, served.columns[0]] = np.nan
    group = max(1, len(df) // 4)
    df.to_parquet(tmp_path/"pairs.parquet", row_group_size=group)
    one = score_file(served, tmp_path/"pairs.parquet", tmp_path/"one.parquet", chunk_rows=group, progress=False)
    many = score_file_dask(served, tmp_path/"pairs.parquet", tmp_path/"dask.parquet", scheduler=scheduler)
    assert (one.rows, one.scored, one.bad, one.first_bad) == (many.rows, many.scored, many.bad, many.first_bad) and one.bad == 1
    # the same blocks give the same bits; other block sizes differ in the last bits only (the matrix product's blocking)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path/"one.parquet"), pd.read_parquet(tmp_path/"dask.parquet"), check_exact=True)
    score_file(served, tmp_path/"pairs.parquet", tmp_path/"small.parquet", chunk_rows=1000, progress=False)
    a, b = pd.read_parquet(tmp_path/"small.parquet")["probability"], pd.read_parquet(tmp_path/"dask.parquet")["probability"]
    assert np.nanmax(np.abs(a - b)) < 1e-12


def _awkward_parts() -> list[pd.DataFrame]:
    """Partitions of one id-sorted table where partition-wise typing differs: a text column missing in all rows of the first
    partition, an integer column that is float (with a missing value) in another, and an empty partition."""
    ts = pd.to_datetime(["2024-01-02", "2024-03-01", "2023-12-31", "2024-06-30", "2024-02-02", "2024-05-05"])
    a = pd.DataFrame({"interaction_id": ["i0", "i1"], "note": [None, None], "rating": [1, 2], "event": ["view", "join"], "timestamp": ts[:2]})
    b = pd.DataFrame({"interaction_id": ["i2", "i3"], "note": ["x", None], "rating": [np.nan, 4.5], "event": ["view", "view"], "timestamp": ts[2:4]})
    c = a.iloc[:0]
    d = pd.DataFrame({"interaction_id": ["i4", "i5"], "note": ["y", "z"], "rating": [5, 3], "event": ["engage", "view"], "timestamp": ts[4:]})
    return [a, b, c, d]


def test_a_partitioned_table_is_written_by_the_workers_and_read_back_as_the_one_file_of_its_concatenation(tmp_path, scheduler):
    from distributed import Client
    from thinkalike_ml.engine import PartitionedTable, dataset_hash_partitioned, stream_partitions
    parts = _awkward_parts()
    whole = pd.concat(parts, ignore_index=True)
    items = pd.DataFrame({"item_id": ["c1", "c2"]})
    with Client(scheduler) as c:
        pt = PartitionedTable(c, "interactions", c.scatter(parts))
        assert len(pt) == len(whole) == 6
        s, w = pt.summary(), table_summary(whole)
        for k in ("rows", "dtypes", "missing", "timestamp", "events"): assert s[k] == w[k], k
        assert s["rating"][:3] == w["rating"][:3] and abs(s["rating"][3] - w["rating"][3]) < 1e-9
        # the hash streamed in order, whatever the number of partitions computed ahead, is the pandas engine's
        for ahead in (1, 3): assert list(stream_partitions(c, len, pt.futures, ahead=ahead)) == [2, 2, 0, 2]
        assert dataset_hash_partitioned(c, {"interactions": pt, "items": items}) == dataset_hash({"interactions": whole, "items": items})
        path, new = write_version(tmp_path/"store", {"interactions": pt, "items": items}, {"version": "v1", "row_counts": {"interactions": 6, "items": 2}}, "sheet")
        assert new and sorted(p.name for p in path.iterdir()) == ["datasheet.md", "interactions", "items.parquet", "manifest.json"]
        assert sorted(p.name for p in (path/"interactions").iterdir()) == [f"part-{k:05d}.parquet" for k in range(4)]
        whole.to_parquet(tmp_path/"one.parquet", index=False)
        back = read_version(path)
        pd.testing.assert_frame_equal(back["interactions"], pd.read_parquet(tmp_path/"one.parquet"))
        pd.testing.assert_frame_equal(back["items"], items)
        # a partition that cannot be stored (an object in a text column): nothing of the version is left, not even its temporary folder
        bad = [p.copy() for p in parts]
        bad[3]["note"] = [object(), "z"]
        with pytest.raises(Exception): write_version(tmp_path/"store", {"interactions": PartitionedTable(c, "interactions", c.scatter(bad))},
                                                     {"version": "v2", "row_counts": {"interactions": 6}}, "sheet")
        assert sorted(p.name for p in (tmp_path/"store").iterdir()) == ["v1"]
    for f in (path/"interactions").iterdir(): f.unlink()
    with pytest.raises(FileNotFoundError, match="table 'interactions' is missing"): read_version(path)


def test_regroup_moves_rows_by_p2p_shuffle_in_input_order_with_their_missing_values(scheduler):
    """Output partition j holds the rows of every input whose partition is j, in input order, with the same dtypes and missing
    values (None stays None, NaN stays NaN in text columns), moved by Dask's P2P shuffle."""
    from distributed import Client
    from thinkalike_ml.engine import _by_user, regroup, user_partition
    rng = np.random.default_rng(0)
    frames = []
    for i, k in enumerate((400, 0, 700, 350, 500)):  # an empty input partition too
        frames.append(pd.DataFrame({
            "user_id": pd.Series([f"U{x}" if x % 17 else None for x in rng.integers(0, 300, k)], dtype=object),
            "t": pd.Series(pd.to_datetime(rng.integers(0, 10**9, k), unit="s")).astype("datetime64[us]"),
            "x": rng.random(k), "b": pd.array(rng.random(k) > .5, dtype="boolean"),
            "s": pd.Series([None if x % 5 == 0 else np.nan if x % 7 == 0 else f"v{x}" for x in range(k)], dtype=object),
            "z": pd.Series([f"w{x}" if x % 3 else np.nan for x in range(k)], dtype="str")}, index=np.arange(k) + 1000 * i))
    every = pd.concat(frames, ignore_index=True)
    where = user_partition(every["user_id"], 4)
    with Client(scheduler) as c:
        out = c.gather(regroup(c, c.scatter(frames), _by_user, 4, "user_id"))
    assert len(out) == 4 and sum(map(len, out)) == len(every)
    for j in range(4):
        want = every[where == j].reset_index(drop=True)
        pd.testing.assert_frame_equal(out[j], want)
        for col in ("user_id", "s"): assert list(map(repr, out[j][col])) == list(map(repr, want[col])), col
