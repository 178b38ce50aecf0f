"""The data stage: reproducible versions, consent, privacy, quality checks, bad input, sources."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import (DataError, DataQualityError, build_dataset, dataset_hash, dataset_pseudonym_key, dataset_version, generate_raw,
                                load_dataset, load_truth, pseudonymize, run_data_stage, true_item_scores, POSITION_COLUMNS)
from thinkalike_ml.runs import RunDirectory
from thinkalike_ml.splits import load_splits, run_splits_stage

KEY = "test-pseudonym-key"
TINY = dict(n_users=200, n_items=30, interactions_per_user=6.0, suggestions_per_user=5.0)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", KEY)


def new_run(tmp_path, **overrides) -> tuple[RunDirectory, dict]:
    params = resolve_params(overrides=overrides, small=True)
    return RunDirectory.create(params, tmp_path/"reports"), params


def versions_in(store: Path) -> list[Path]:
    return [p for p in store.iterdir() if not p.name.startswith(".")] if store.exists() else []


def written_files(run: RunDirectory) -> list[Path]:
    """Every file the stage wrote: the run directory (its store included) and the store it used."""
    store = Path(dataset_version(run)["store"])
    return [p for root in {run.path, store} for p in root.rglob("*") if p.is_file()]


def strings_in(path: Path) -> set[str]:
    """Every string a written file holds: the values and column names of a table, the text of anything else."""
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        out = set(map(str, df.columns))
        for c in df.columns:
            if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]): out |= set(df[c].dropna().astype(str))
        return out
    return {path.read_bytes().decode("utf-8", errors="replace")}


# --- versions -------------------------------------------------------------------------------------

def test_same_params_same_hash_and_another_seed_another(tmp_path):
    store = str(tmp_path/"store")
    r1, p1 = new_run(tmp_path, dataset_store=store, **TINY)
    r2, p2 = new_run(tmp_path, dataset_store=store, **TINY)
    r3, p3 = new_run(tmp_path, dataset_store=store, seed=7, **TINY)
    m1, m2, m3 = run_data_stage(r1, p1), run_data_stage(r2, p2), run_data_stage(r3, p3)
    v1, v2, v3 = dataset_version(r1), dataset_version(r2), dataset_version(r3)
    assert v1["hash"] == v2["hash"] and v1["hash"] != v3["hash"]
    assert (m1["new_version"], m2["new_version"], m3["new_version"]) == (1, 0, 1)
    assert len(versions_in(Path(store))) == 2  # each version kept once
    manifest = json.loads((Path(v1["path"])/"manifest.json").read_text())
    assert {"source", "row_counts", "schema", "hash", "parameters", "created"} <= set(manifest)
    assert (Path(v1["path"])/"datasheet.md").is_file() and r1.exists("datasheet.md")
    t = load_dataset(r1)
    assert manifest["row_counts"] == {k: len(v) for k, v in t.items()}
    assert dataset_hash(t) == v1["hash"]


def test_synthetic_hash_is_the_same_on_any_machine_real_data_keeps_its_secret_key(tmp_path, monkeypatch):
    "Synthetic pseudonyms come from the seed, so another machine's secret key does not change the hash; real data's do."
    hashes = {}
    for machine_key in ("key-of-one-machine", "key-of-another"):
        monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", machine_key)
        synthetic = build_dataset(resolve_params(overrides=TINY, small=True))["tables"]
        files = build_dataset(resolve_params(overrides=dict(source="files", files=_files(tmp_path)), small=True))["tables"]
        hashes[machine_key] = (dataset_hash(synthetic), dataset_hash(files))
    (s1, f1), (s2, f2) = hashes.values()
    assert s1 == s2 and f1 != f2


def test_hash_ignores_input_row_order(tmp_path):
    raw, _ = generate_raw(**TINY, seed=3)
    files = {}
    for name in ("users", "items", "interactions"):
        for tag, df in (("a", raw[name]), ("b", raw[name].sample(frac=1, random_state=1))):
            df = df.drop(columns="interaction_id") if name == "interactions" else df
            path = tmp_path/f"{name}_{tag}.csv"
            df.to_csv(path, index=False)
            files.setdefault(tag, {})[name] = str(path)
    ha = dataset_hash(build_dataset(dict(source="files", files=files["a"]), key=KEY.encode())["tables"])
    hb = dataset_hash(build_dataset(dict(source="files", files=files["b"]), key=KEY.encode())["tables"])
    assert ha == hb


# --- consent and privacy --------------------------------------------------------------------------

def test_no_id_of_a_non_consenting_or_withdrawn_user_anywhere(tmp_path):
    raw, _ = generate_raw(**TINY, seed=5)
    users = raw["users"]
    consenting = users.user_id[users.consent_research].tolist()
    key = dataset_pseudonym_key({"source": "synthetic", "seed": 5})  # synthetic pseudonyms come from the seed
    withdrawn = consenting[:5] + [pseudonymize([consenting[5]], key)[0]]  # raw ids and a pseudonym
    (tmp_path/"withdrawn.txt").write_text("# withdrawn\n" + "\n".join(withdrawn) + "\n")
    run, params = new_run(tmp_path, seed=5, withdrawn_ids_file=str(tmp_path/"withdrawn.txt"), **TINY)
    m = run_data_stage(run, params)
    run_splits_stage(run, params)
    gone_raw = set(users.user_id[~users.consent_research]) | set(consenting[:6])
    gone = set(pseudonymize(sorted(gone_raw), key)) | gone_raw
    assert m["users_without_consent"] == int((~users.consent_research).sum()) and m["users_withdrawn"] == 6
    found = set().union(*(strings_in(p) for p in written_files(run)))
    assert not gone & found
    text = "\n".join(s for s in found if len(s) > 200)  # whole text files (json, markdown)
    assert not any(g in text for g in gone)
    t = load_dataset(run)
    assert not set(t["interactions"].user_id) & gone and not (set(t["suggestions"].user_a) | set(t["suggestions"].user_b)) & gone
    assert len(t["items"]) == TINY["n_items"]  # communities of withdrawn creators are kept
    assert set(load_splits(run)["suggestions"].suggestion_id) == set(t["suggestions"].suggestion_id)


def test_no_raw_name_or_email_in_any_written_file(tmp_path):
    run, params = new_run(tmp_path, **TINY)
    run_data_stage(run, params)
    run_splits_stage(run, params)
    raw, _ = generate_raw(**{k: params[k] for k in TINY}, seed=params["seed"])
    secrets_ = set(raw["users"].name) | set(raw["users"].email)
    files = written_files(run)
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "datasheet.md" for p in files)
    for p in files:
        found = strings_in(p)
        assert not secrets_ & found, p
        if p.suffix != ".parquet": assert not any(s in next(iter(found)) for s in secrets_), p
        assert KEY not in "".join(found), p
    users = load_dataset(run)["users"]
    assert not {"name", "email", "age"} & set(users.columns)
    assert users.user_id.str.fullmatch(r"p[0-9a-f]{20}").all()
    assert set(users.age_band) <= {"18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"}


# --- quality and bad input ------------------------------------------------------------------------

def test_dirty_rows_are_repaired_with_warnings_and_too_many_fail(tmp_path):
    run, params = new_run(tmp_path, dirty_rate=0.08, **TINY)
    m = run_data_stage(run, params)
    q = run.read_table("tables/data_quality.parquet")
    assert m["quality_warnings"] >= 8 and (q.status == "warn").sum() == m["quality_warnings"]
    assert not (q.status == "fail").any()
    t = load_dataset(run)
    assert t["users"][POSITION_COLUMNS].stack().dropna().between(-1, 1).all() and t["suggestions"].accepted.isin([0, 1]).all()
    assert (t["suggestions"].user_a != t["suggestions"].user_b).all()
    run2, params2 = new_run(tmp_path, dirty_rate=0.4, **TINY)
    with pytest.raises(DataQualityError, match=r"table '\w+', column '[^']+', rule '.+': \d+ rows .*first at row \d+"):
        run_data_stage(run2, params2)
    assert not versions_in(run2.path/"store") and not run2.exists("artifacts/data/dataset.json")
    assert (run2.read_table("tables/data_quality.parquet").status == "fail").any()


def _files(tmp_path, **changes) -> dict:
    """A small valid set of table files; `changes` replace a table's frame (or text) before writing."""
    tables = {
        "users": pd.DataFrame({"user_id": [f"u{k}" for k in range(20)], "consent_research": "yes",
                               "signup_time": "2025-01-01", "age": 30, "name": "Ann Example"}),
        "items": pd.DataFrame({"item_id": [f"c{k}" for k in range(5)]}),
        "interactions": pd.DataFrame({"user_id": [f"u{k % 20}" for k in range(40)], "item_id": [f"c{k % 5}" for k in range(40)],
                                      "timestamp": [f"2025-03-01 {k % 24:02d}:{k:02d}:00" for k in range(40)], "event": "view"})}
    tables.update(changes)
    out = {}
    for name, df in tables.items():
        p = tmp_path/f"{name}.csv"
        p.write_text(df) if isinstance(df, str) else df.to_csv(p, index=False)
        out[name] = str(p)
    return out


def _interactions(**cols):
    df = pd.DataFrame({"user_id": [f"u{k % 20}" for k in range(40)], "item_id": [f"c{k % 5}" for k in range(40)],
                       "timestamp": [f"2025-03-01 {k % 24:02d}:{k:02d}:00" for k in range(40)], "event": "view"})
    return df.assign(**cols)


BAD_INPUTS = {
    "malformed CSV": (dict(interactions="user_id,item_id,timestamp\nu1,c1,2025-03-01\nu2,c2,2025-03-02,extra,more\n"), "is not valid CSV"),
    "missing column": (dict(interactions=_interactions().drop(columns="timestamp")), "missing required column(s) 'timestamp'"),
    "wrong type": (dict(users=pd.DataFrame({"user_id": ["u0", "u1", "u2"], "consent_research": "yes", "age": ["31", "abc", "40"]})),
                   "column 'age': expected numbers, found 'abc' in 1 row (first at row 1)"),
    "bad timestamp": (dict(interactions=_interactions(timestamp=["2025-03-01"] * 39 + ["yesterday"])), "column 'timestamp': expected timestamps"),
    "all-null column": (dict(interactions=_interactions(timestamp=None)), "column 'timestamp': all 40 values are missing"),
    "empty table": (dict(interactions="user_id,item_id,timestamp\n"), "table 'interactions' is empty"),
    "duplicate ids": (dict(users=pd.DataFrame({"user_id": ["u0", "u0", "u1"], "consent_research": "yes", "age": [30, 31, 32]})),
                      "column 'user_id', rule 'unique ids'"),
    "unknown foreign keys": (dict(interactions=_interactions(user_id=["u999"] * 10 + ["u1"] * 30)),
                             "column 'user_id', rule 'refers to a known user': 10 rows (25.0%)"),
    "future timestamps": (dict(interactions=_interactions(timestamp=["2099-01-01"] * 4 + [f"2025-03-01 10:{k:02d}:00" for k in range(36)])),
                          "rule 'not in the future': 4 rows (10.0%)"),
    "consent flag not boolean": (dict(users=pd.DataFrame({"user_id": ["u0"], "consent_research": ["maybe"]})), "expected true/false"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_writes_no_version(tmp_path, case):
    changes, message = BAD_INPUTS[case]
    run, params = new_run(tmp_path, source="files", files=_files(tmp_path, **changes))
    with pytest.raises(DataError) as e:
        run_data_stage(run, params)
    assert message in str(e.value)
    assert not versions_in(run.path/"store") and not run.exists("artifacts/data/dataset.json")


def test_column_mapping_renames_and_names_missing_columns(tmp_path):
    users = pd.DataFrame({"uid": [f"u{k}" for k in range(20)], "ok": "true"})
    files = _files(tmp_path, users=users)
    run, params = new_run(tmp_path, source="files", files=files,
                          column_mapping={"users": {"user_id": "uid", "consent_research": "ok"}})
    m = run_data_stage(run, params)
    assert m["n_users"] == 20 and m["n_suggestions"] == 0
    t = load_dataset(run)
    assert list(t["suggestions"].columns) == ["suggestion_id", "user_a", "user_b", "timestamp", "accepted"]
    assert load_truth(run) is None
    run2, params2 = new_run(tmp_path, source="files", files=files, column_mapping={"users": {"user_id": "user"}})
    with pytest.raises(DataError, match="maps 'user_id' to 'user', but file .* has no column 'user'"):
        run_data_stage(run2, params2)


def test_extra_columns_are_dropped_with_a_warning(tmp_path):
    run, params = new_run(tmp_path, source="files", files=_files(tmp_path, interactions=_interactions(mood="happy")))
    run_data_stage(run, params)
    q = run.read_table("tables/data_quality.parquet")
    assert ((q.rule == "known columns") & (q.status == "warn")).any()
    assert "mood" not in load_dataset(run)["interactions"]


# --- ground truth ---------------------------------------------------------------------------------

def test_ground_truth_oracle_beats_the_simple_score(tmp_path):
    run, params = new_run(tmp_path, n_users=2000, n_items=50, interactions_per_user=2.0, suggestions_per_user=10.0)
    m = run_data_stage(run, params)
    assert 0.75 <= m["oracle_auc"] <= 0.87
    assert m["value_similarity_auc"] < m["oracle_auc"] - 0.05
    truth, t = load_truth(run), load_dataset(run)
    assert set(truth["suggestions"].suggestion_id) == set(t["suggestions"].suggestion_id)
    s = true_item_scores(truth, t["users"].user_id[:3], t["items"].item_id)
    assert s.shape == (3, len(t["items"])) and np.isfinite(s).all()
    with pytest.raises(KeyError, match="no ground truth"):
        true_item_scores(truth, ["nobody"], t["items"].item_id)


def test_group_bias_and_drift_knobs():
    base = dict(n_users=3000, n_items=20, interactions_per_user=1.0, suggestions_per_user=6.0, seed=11)
    def rate_gap(bias):
        raw, truth = generate_raw(**base, group_bias=bias)
        s = truth["suggestions"]
        return s.p_accept[s.n_penalized == 0].mean() - s.p_accept[s.n_penalized > 0].mean()
    assert rate_gap(1.0) > rate_gap(0.0) + 0.05
    raw0, _ = generate_raw(**base, data_drift=0.0)
    raw1, _ = generate_raw(**base, data_drift=1.0)
    late = lambda r: r["users"][r["users"].signup_time >= pd.Timestamp("2025-10-20")]
    assert late(raw1).age.mean() < late(raw0).age.mean() - 4
    _, t0 = generate_raw(**base, concept_drift=0.0)
    _, t1 = generate_raw(**base, concept_drift=1.0)
    prod = lambda t: t["suggestions"][t["suggestions"].period == "production"]
    corr = lambda t: np.corrcoef(prod(t).interest_jaccard, prod(t).logit)[0, 1]
    assert corr(t1) > corr(t0)


def test_movietweetings_adapter(tmp_path):
    run, params = new_run(tmp_path, source="movietweetings")
    m = run_data_stage(run, params)
    t = load_dataset(run)
    assert m["n_interactions"] == 100_000 and m["n_suggestions"] == 0
    assert {"interaction_id", "user_id", "item_id", "event", "timestamp", "rating"} <= set(t["interactions"].columns)
    assert t["interactions"].rating.between(0, 10).all() and str(t["interactions"].timestamp.dtype).startswith("datetime64")
    assert t["interactions"].item_id.isin(t["items"].item_id).all() and t["items"].tags.notna().any()
    assert load_truth(run) is None and "MIT" in run.file("datasheet.md").read_text()


def test_items_are_derived_when_only_users_and_interactions_are_given(tmp_path):
    files = _files(tmp_path)
    del files["items"]
    run, params = new_run(tmp_path, source="files", files=files)
    run_data_stage(run, params)
    t = load_dataset(run)
    assert sorted(t["items"].item_id) == [f"c{k}" for k in range(5)] and len(t["interactions"]) == 40
    assert t["interactions"].interaction_id.str.fullmatch(r"i[0-9a-f]{16}").all()


def test_hidden_taste_keeps_the_oracle_exact_and_interactions_carry_ratings():
    from thinkalike_ml.data import ACCEPTANCE, RATING_SCALE, TASTE_DIMS, marginal_acceptance
    raw, truth = generate_raw(n_users=1500, n_items=80, interactions_per_user=10.0, suggestions_per_user=6.0, seed=9)
    s, k = truth["suggestions"], ACCEPTANCE
    assert truth["info"]["acceptance_terms"] == ["agreement", "conflict", "interest_jaccard", "age_diff_decades", "taste_match"]
    # the logit is exactly the documented sum of the true terms, the taste included; p_accept integrates the noise out
    logit = (k["intercept"] + k["agreement"] * s.agreement + k["conflict"] * s.conflict + k["interests"] * s.interest_jaccard
             + k["age_decades"] * s.age_diff_decades + k["taste"] * s.taste_match - s.bias_penalty)
    np.testing.assert_allclose(s.logit, logit, atol=1e-9)
    np.testing.assert_allclose(s.p_accept, marginal_acceptance(s.logit.to_numpy(), k["noise_sd"]), atol=1e-12)
    # the taste is in the truth's factors, so the oracle ranking sees it; the hidden columns are nowhere in the data
    assert [c for c in truth["user_factors"].columns if "taste" in c] == [f"f_taste_{j}" for j in range(TASTE_DIMS)]
    assert not any("taste" in c for t in raw.values() for c in t.columns)
    it = raw["interactions"]
    S = true_item_scores(truth, truth["user_factors"].user_id, truth["item_factors"].item_id)
    pref = S[pd.Index(truth["user_factors"].user_id).get_indexer(it.user_id), pd.Index(truth["item_factors"].item_id).get_indexer(it.item_id)]
    # every interaction is rated on the star scale, and ratings follow the true preference (plus noise)
    assert it["rating"].notna().all() and it["rating"].between(*RATING_SCALE).all() and set(it["rating"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.corrcoef(pref, it["rating"])[0, 1] > 0.6
    # the taste steers which communities users join: users with similar tastes share more communities than dissimilar ones
    close, far = s.taste_match > 0.8, s.taste_match < -0.8
    sets = it.groupby("user_id")["item_id"].agg(set)
    sugg = raw["suggestions"]
    def shared(mask): return np.mean([len(sets.get(a, set()) & sets.get(b, set())) for a, b in zip(sugg.user_a[mask], sugg.user_b[mask])])
    assert shared(close.to_numpy()) > 1.5 * shared(far.to_numpy())
