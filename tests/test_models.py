"""Models: ranking metrics against hand-computed values, recommenders, the matcher pieces, the MovieTweetings protocol, the stage,
and what it stores (models and predictions, read back only through the loaders)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from thinkalike_ml.data import read_movietweetings
from thinkalike_ml.models import (LIST_COLUMNS, MATCHER_MODEL, MATCHER_PREDICTIONS, PREDICTION_COLUMNS, RECOMMENDER_LISTS,
                                  RECOMMENDER_MODEL, RECOMMENDER_RELEVANT, RELEVANT_COLUMNS, EASERecommender, ItemKNNRecommender, MostPopularRecommender, RandomRecommender,
                                  TimeDecayedPopularityRecommender, ValueProfileRecommender, calibrate_on_validation,
                                  classification_scores, evaluate_movietweetings_protocol, interaction_data, load_models,
                                  load_predictions, make_hgb, ranking_metrics, ranking_metrics_from_lists, recommend,
                                  top_k_items)
from thinkalike_ml.runs import ArtifactError, RunDirectory


def test_ranking_metrics_hand_computed():
    R = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]))
    top = np.array([[1, 2, 3], [2, 3, 0], [4, 0, 1], [0, 1, 2]])
    per = ranking_metrics(top, R, per_user=True)
    assert len(per) == 3  # user 3 has nothing relevant
    d = 1 / np.log2([2, 3, 4])
    np.testing.assert_allclose(per.ndcg, [(d[0] + d[2]) / (d[0] + d[1]), d[2] / d[0], d[0] / (d[0] + d[1] + d[2])])
    np.testing.assert_allclose(per.precision, [2 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(per.recall, [1, 1, 1 / 3])
    np.testing.assert_allclose(per.hit_rate, [1, 1, 1])
    np.testing.assert_allclose(per["map"], [(1 + 2 / 3) / 2, 1 / 3, 1 / 3])
    m = ranking_metrics(top, R, k=2)
    assert m["n_users"] == 3
    assert m["precision@2"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert m["ndcg@2"] == pytest.approx((1 / (d[0] + d[1]) + 0 + d[0] / (d[0] + d[1])) / 3)


def test_ranking_metrics_perfect_and_vectorised_like_a_loop():
    rng = np.random.default_rng(0)
    R = sp.csr_matrix((rng.random((50, 30)) < 0.1).astype(float))
    S = rng.random((50, 30))
    top = top_k_items(S, 5)
    m = ranking_metrics(top, R, per_user=True)
    for u in m.index[:10]:  # a plain loop over one user gives the same NDCG
        rel = set(R[u].indices)
        dcg = sum(1 / np.log2(i + 2) for i, it in enumerate(top[u]) if it in rel)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(len(rel), 5)))
        assert m.loc[u, "ndcg"] == pytest.approx(dcg / idcg)
    perfect = top_k_items(R.toarray() + 1e-3 * rng.random(R.shape), 5)
    assert ranking_metrics(perfect, R)["ndcg@5"] == pytest.approx(1.0)


def test_ease_matches_closed_form_and_recommenders_exclude_seen():
    rng = np.random.default_rng(1)
    inter = pd.DataFrame({"user_id": rng.integers(0, 40, 400).astype(str), "item_id": rng.integers(0, 15, 400).astype(str),
                          "timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 100, 400), unit="D")})
    d = interaction_data(inter)
    e = EASERecommender(l2=5.0).fit(d)
    X = d.X.toarray()
    P = np.linalg.inv(X.T @ X + 5.0 * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)
    np.testing.assert_allclose(e.weights_, B, atol=1e-10)
    rows = np.arange(d.n_users)
    for m in [RandomRecommender(0), MostPopularRecommender(), TimeDecayedPopularityRecommender(5.0), ItemKNNRecommender(5), e]:
        recs = recommend(m.fit(d), d, rows, 3)
        assert not (X[rows[:, None], recs] > 0).any(), m.name


def test_value_profile_cold_start_learns_profile_to_items():
    rng = np.random.default_rng(2)
    n = 400
    F = pd.DataFrame({"stance": rng.normal(size=n)}, index=[f"u{i}" for i in range(n)])
    item = np.where(F.stance > 0, "pos", "neg")  # users with a positive stance join 'pos'
    inter = pd.DataFrame({"user_id": F.index, "item_id": item, "timestamp": pd.Timestamp("2025-01-01")})
    d = interaction_data(inter, user_features=F)
    m = ValueProfileRecommender(alpha=1.0).fit(d)
    new = pd.DataFrame({"stance": [2.0, -2.0]})
    S = m.score_features(new)
    assert d.items[S[0].argmax()] == "pos" and d.items[S[1].argmax()] == "neg"


def test_classification_scores_and_calibration():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"value_cosine": rng.normal(size=4000)})
    p = 1 / (1 + np.exp(-(X.value_cosine * 2 - 1)))
    y = (rng.random(4000) < p).astype(int)
    m = make_hgb(0).fit(X[:2000], y[:2000])
    c = calibrate_on_validation(m, X[2000:3000], y[2000:3000])
    pc = c.predict_proba(X[3000:])[:, 1]
    s = classification_scores(y[3000:], pc)
    assert abs(pc.mean() - y[3000:].mean()) < 0.03
    assert s["roc_auc"] > 0.7 and s["brier"] < 0.25
    assert classification_scores([0, 1], [0.5, 0.5])["log_loss"] == pytest.approx(np.log(2))


def _movietweetings() -> pd.DataFrame:
    """The bundled MovieTweetings sample (data/movietweetings): the 100,000 ratings the reference figures were computed on."""
    return read_movietweetings()["interactions"]


def test_movietweetings_protocol_reproduces_reference_most_popular():
    """The protocol reproduces the reference figure computed outside: most-popular NDCG@10 = 0.0618."""
    m = evaluate_movietweetings_protocol(_movietweetings(), MostPopularRecommender(), 10)
    assert m["ndcg@10"] == pytest.approx(0.0618, abs=0.0005)
    assert m["n_users"] > 3000


@pytest.mark.slow
def test_movietweetings_best_models_beat_reference_ease():
    """EASE (lambda tuned on an inner time split, here fixed at the tuned value) and trending beat the EASE reference 0.0696."""
    df = _movietweetings()
    ease = evaluate_movietweetings_protocol(df, EASERecommender(1000.0, min_item_count=2), 10)
    trend = evaluate_movietweetings_protocol(df, TimeDecayedPopularityRecommender(2.0), 10)
    assert ease["ndcg@10"] > 0.0696 and trend["ndcg@10"] > 0.0696


@pytest.fixture(scope="module")
def small_models_run(tmp_path_factory):
    """A small run through data, splits, features and models, tracked in a store inside the run directory."""
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.stages import execute_stage
    mp = pytest.MonkeyPatch()
    mp.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = resolve_params(overrides=dict(n_users=600, n_trials=2), small=True)
    run = RunDirectory.create(params, tmp_path_factory.mktemp("reports"))
    for stage in ("data", "splits", "features"): execute_stage(run, stage, params)
    metrics = execute_stage(run, "models", params)
    yield run, metrics
    mp.undo()


def test_models_stage_beats_baselines(small_models_run):
    run, m = small_models_run
    assert m["matcher_test_roc_auc"] > m["matcher_test_value_similarity_roc_auc"] + 0.01
    assert m["matcher_test_log_loss"] < m["matcher_test_prior_log_loss"]
    assert m["matcher_test_roc_auc"] <= m["matcher_test_oracle_roc_auc"] + 0.02
    assert m["recommender_test_ndcg"] > m["recommender_test_random_ndcg"]
    # Cold start: this run holds only about a dozen cold users (per-user NDCG has a spread near 0.3), too few to order the value-profile
    # model and most-popular; small runs with seeds 1, 2, 3 and 42 gave either order. The value-profile model's learning is tested above
    # (test_value_profile_cold_start_learns_profile_to_items), and the default run's ~100 cold users report the comparison.
    assert m["recommender_n_cold_users"] >= 5
    assert all(0 < m[f"recommender_cold_{r}_ndcg"] <= 1 for r in ("value_profile", "most_popular"))
    for f in ("tables/matcher_scores.parquet", "tables/matcher_hgb_trials.parquet", "tables/recommender_scores.parquet",
              "artifacts/tracking.json"):
        assert run.exists(f), f
    assert all(np.isfinite(v) for v in m.values())
    assert run.metrics()["models"] == m


def test_predictions_cover_every_model_and_split(small_models_run):
    run, _ = small_models_run
    p = load_predictions(run)
    preds, lists, rel = p["matcher"], p["recommender"], p["recommender_relevant"]
    assert preds.columns.tolist() == PREDICTION_COLUMNS and lists.columns.tolist() == LIST_COLUMNS
    assert rel.columns.tolist() == RELEVANT_COLUMNS
    assert preds["calibrated"].dtype == bool and preds["p"].between(0, 1).all()
    from thinkalike_ml.features import load_features
    pairs = load_features(run)["pair_features"]
    for split in ("validation", "test"):
        ids = set(pairs.loc[pairs.split == split, "suggestion_id"])
        for model, calibrated in [("prior", False), ("value_similarity", False), ("logreg", False), ("logreg", True),
                                  ("hgb", False), ("hgb", True)]:
            rows = preds[(preds.split == split) & (preds.model == model) & (preds.calibrated == calibrated)]
            assert len(rows) == len(ids) and set(rows.suggestion_id) == ids, (split, model, calibrated)
    assert set(preds.loc[preds.model == "oracle", "split"]) == {"test"}
    k = run.params["top_k"]
    assert set(lists.model) == {"random", "most_popular", "trending", "item_knn", "ease", "value_profile", "oracle"}
    assert (lists.groupby(["model", "user_id"]).size() == k).all()
    assert (lists.groupby("model").user_id.nunique() == rel.user_id.nunique()).all()  # every evaluated user, every model
    assert set(lists.user_id) == set(rel.user_id)


def test_headline_metrics_recompute_from_the_stored_predictions(small_models_run):
    run, m = small_models_run
    p, models = load_predictions(run), load_models(run)
    t = p["matcher"]
    t = t[(t.split == "test") & (t.model == models["matcher"]["selected"]) & t.calibrated]
    assert roc_auc_score(t.accepted, t.p) == pytest.approx(m["matcher_test_roc_auc"], abs=1e-12)
    k, selected = run.params["top_k"], models["recommender"].model.name
    scores = ranking_metrics_from_lists(p["recommender"], p["recommender_relevant"], k).set_index("model")
    assert scores.loc[selected, f"ndcg@{k}"] == pytest.approx(m["recommender_test_ndcg"], abs=1e-12)
    # and by hand: the mean over evaluated users of DCG / ideal DCG
    lists = p["recommender"][p["recommender"].model == selected]
    rel = p["recommender_relevant"].groupby("user_id").item_id.apply(set)
    hit = np.array([i in rel[u] for u, i in zip(lists.user_id, lists.item_id)], dtype=float)
    dcg = lists.assign(gain=hit / np.log2(lists["rank"] + 1)).groupby("user_id").gain.sum()
    idcg = rel.map(lambda s: sum(1 / np.log2(r + 1) for r in range(1, min(len(s), k) + 1)))
    assert (dcg / idcg.reindex(dcg.index)).mean() == pytest.approx(m["recommender_test_ndcg"], abs=1e-12)


def test_a_changed_model_file_is_refused_naming_it(small_models_run, tmp_path):
    run, _ = small_models_run
    assert {MATCHER_MODEL, RECOMMENDER_MODEL, MATCHER_PREDICTIONS, RECOMMENDER_LISTS, RECOMMENDER_RELEVANT} <= set(run.checksums())
    copy = RunDirectory(shutil.copytree(run.path, tmp_path / "copy", ignore=shutil.ignore_patterns("mlruns")))
    f = copy.file(MATCHER_MODEL)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ArtifactError) as e: load_models(copy)
    msg = str(e.value)
    assert "matcher.pkl" in msg and "\n" not in msg
    assert e.value.__cause__ is None and e.value.__context__ is None  # refused before unpickling: no pickle traceback
    assert len(load_predictions(copy)["matcher"]) == len(load_predictions(run)["matcher"])  # the rest still loads


def test_models_stage_is_tracked_in_the_run_directory(small_models_run):
    import mlflow
    run, m = small_models_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    assert rec["tracking_uri"] == f"sqlite:///{run.path / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(rec["tracking_uri"])
    r = client.get_run(rec["run_id"])
    assert r.data.tags["thinkalike.run_directory"] == str(run.path)
    assert r.data.tags["thinkalike.seed"] == str(run.params["seed"])
    assert "thinkalike.code_commit" in r.data.tags
    assert r.data.params["matcher.selected"] in ("logreg", "hgb")
    assert r.data.metrics["matcher_test_roc_auc"] == pytest.approx(m["matcher_test_roc_auc"])
    assert len(r.inputs.dataset_inputs) >= 1
    children = client.search_runs([rec["experiment_id"]], f"tags.mlflow.parentRunId = '{rec['run_id']}'")
    assert len(children) >= 2 + 5  # Optuna trials and grid points as nested runs
    arts = {a.path for a in client.list_artifacts(rec["run_id"])}
    assert "features" in arts  # the figures are logged by the report, once drawn: test_the_reports_figures_are_logged_to_mlflow
    logged = mlflow.search_logged_models(experiment_ids=[rec["experiment_id"]], output_format="list")
    names = {lm.name for lm in logged}
    assert {"matcher", "recommender"} <= names
    matcher = next(lm for lm in logged if lm.name == "matcher")
    pf = mlflow.pyfunc.load_model(matcher.model_uri)
    assert pf.metadata.signature is not None
    test = load_predictions(run)["matcher"]
    test = test[(test.split == "test") & (test.model == r.data.params["matcher.selected"]) & test.calibrated]
    from thinkalike_ml.features import load_features
    feats = load_features(run)
    rows = feats["pair_features"].set_index("suggestion_id").loc[test.suggestion_id.head(20), feats["pair_columns"]]
    p = np.asarray(pf.predict(rows.reset_index(drop=True)))
    assert p.shape == (20, 2) and np.allclose(p.sum(1), 1)
    np.testing.assert_allclose(p[:, 1], test.p.head(20), rtol=1e-9)  # the logged model is the one whose predictions are stored
    # the project's store was not touched
    assert not (run.path.parent / "mlruns").exists()


def test_the_reports_figures_are_logged_to_mlflow(small_models_run, tmp_path):
    """The report's figures, drawn from the stored tables as the notebook draws them, land in MLflow as the very files saved in the run."""
    import matplotlib
    matplotlib.use("Agg")
    import mlflow
    src, _ = small_models_run
    before = mlflow.get_tracking_uri()  # tracking the copy points this process at its store: the other tests read the stage's
    try: _log_the_reports_figures(src, tmp_path)
    finally: mlflow.set_tracking_uri(before)


def _log_the_reports_figures(src, tmp_path):
    import matplotlib.pyplot as plt
    import mlflow

    from thinkalike_ml.models import (MATCHER_HGB_TRIALS, MATCHER_LOGREG_GRID, MODELS_FIGURES, RECOMMENDER_SCORES, RECOMMENDER_TUNING,
                                      plot_matcher_calibration, plot_matcher_search, plot_recommender_scores, track_report_figures)
    run = RunDirectory(shutil.copytree(src.path, tmp_path / "run", ignore=shutil.ignore_patterns("mlruns", "tracking.json")))  # a copy with a store of its own
    assert track_report_figures(run, run.params) == []  # nothing drawn yet: nothing logged
    figs = {"matcher_search": plot_matcher_search(run.read_table(MATCHER_LOGREG_GRID), run.read_table(MATCHER_HGB_TRIALS)),
            "matcher_calibration": plot_matcher_calibration(load_predictions(run)["matcher"]),
            "recommender_scores": plot_recommender_scores(run.read_table(RECOMMENDER_TUNING), run.read_table(RECOMMENDER_SCORES), run.params["top_k"])}
    for name, fig in figs.items():
        run.save_figure(name, fig); plt.close(fig)
    assert track_report_figures(run, run.params) == [f"{n}.png" for n in MODELS_FIGURES]
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    client = mlflow.MlflowClient(rec["tracking_uri"])
    logged = {f.path for f in client.list_artifacts(rec["run_id"], "figures")}
    assert logged == {f"figures/{n}.png" for n in MODELS_FIGURES}
    got = client.download_artifacts(rec["run_id"], "figures/matcher_calibration.png", str(tmp_path))
    assert open(got, "rb").read() == run.file("figures/matcher_calibration.png").read_bytes()


def test_every_search_ends_inside_or_says_why(small_models_run):
    """Issue 9 item 4: every searched parameter's final space, position and widenings are stored and tracked; a warning only when the budget ran out."""
    import mlflow
    from thinkalike_ml.models import HGB_SEARCH_SPACE, SEARCH_EDGES, SEARCH_STATUSES, edge_side
    run, _ = small_models_run
    e = run.read_table(SEARCH_EDGES)
    expected = {("matcher logreg", "C"), ("recommender item_knn", "n_neighbors"), ("recommender trending", "half_life_days"), ("recommender ease", "l2")}
    assert set(zip(e["model"], e["parameter"])) == expected | {("matcher hgb", p) for p in HGB_SEARCH_SPACE}
    assert set(e["status"]) <= set(SEARCH_STATUSES) and (e["widenings"] <= run.params["max_grid_widenings"]).all()
    for r in e.itertuples():
        space = eval(r.search_space)  # the stored tuple or range
        at = edge_side(r.chosen, space)
        assert (r.status == "inside") == (at is None), r  # "inside" exactly when the chosen value is not at an edge of the final space
        if r.widenings: assert r.search_space != r.initial_space
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    p = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"]).data.params
    assert p["matcher.logreg.C.widenings"] == str(int(e.set_index("parameter").loc["C", "widenings"]))
    assert p["recommender.ease.l2.search_status"] in SEARCH_STATUSES


def test_recommender_model_serves_known_and_new_users(small_models_run):
    run, _ = small_models_run
    rec = load_models(run)["recommender"]
    known = rec.data.users[:2].tolist()
    from thinkalike_ml.features import load_features
    uf = load_features(run)["user_features"].set_index("user_id")
    out = rec.recommend(known + ["brand-new"], pd.concat([uf.loc[known], uf.iloc[:1]]).reset_index(drop=True))
    assert set(out.user_id) == set(known) | {"brand-new"}
    assert (out.groupby("user_id").size() == rec.k).all()
    assert set(out.loc[out.user_id == "brand-new", "path"]) == {"value_profile"}
    for u in known:  # nothing already seen
        seen = set(rec.data.items[rec.data.X[rec.data.users.get_loc(u)].indices])
        assert not seen & set(out.loc[out.user_id == u, "item_id"])


# -- training on a sample (matcher_train_max_rows, recommender_train_max_users)

def _labelled_pairs(n=6000, seed=0):
    """A pair table (train 4000 rows in 4 folds, validation 1000, test 1000) with a 12% acceptance rate and a tiny user group."""
    from thinkalike_ml.models import matcher_data
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["value_cosine", "a", "b"])
    split = np.select([np.arange(n) < 4000, np.arange(n) < 5000], ["train", "validation"], "test")
    t = pd.DataFrame({"suggestion_id": [f"s{i:05d}" for i in range(n)], "accepted": (rng.random(n) < 0.12).astype(int), "split": split,
                      "fold": np.where(split == "train", np.arange(n) % 4, -1)})
    groups = pd.DataFrame({"region_a": np.where(np.arange(n) % 997 == 5, "tiny", rng.choice(["north", "south", "east"], n)),
                           "gender_b": rng.choice(["f", "m", "x"], n, p=[0.49, 0.49, 0.02])}, index=t["suggestion_id"])
    table = pd.concat([t, X], axis=1)
    return table, matcher_data(table, ["value_cosine", "a", "b"]), groups


def test_matcher_sample_is_the_size_asked_stratified_keeps_every_group_and_is_seeded():
    from thinkalike_ml.models import sample_matcher_data
    table, md, groups = _labelled_pairs()
    present = groups.reindex(md.tables["train"]["suggestion_id"]).reset_index(drop=True)
    assert (present["region_a"] == "tiny").sum() == 5  # 5 of 4000 training rows
    s, info = sample_matcher_data(md, 400, seed=7, present=present)
    kept = present.set_index(md.tables["train"]["suggestion_id"]).reindex(s.tables["train"]["suggestion_id"])
    assert 400 <= info["train_rows_used"] <= 400 + 2 and info["train_rows_available"] == 4000 == len(md.tables["train"])
    assert len(s.tables["train"]) == info["train_rows_used"] and s.tables["train"]["suggestion_id"].is_unique
    y, ys = md.y("train"), s.y("train")
    assert abs(ys.mean() - y.mean()) < 0.01 and info["label_rate_used"] == pytest.approx(ys.mean())  # stratified by label
    assert all(abs(c - 100) <= 3 for c in np.bincount(s.folds)), np.bincount(s.folds)  # and by fold
    for col in present.columns:  # every group of each attribute present (the 4-row 'tiny' region included)
        assert set(kept[col]) == set(present[col]), col
    for split in ("validation", "test"):  # never sampled
        pd.testing.assert_frame_equal(s.tables[split], md.tables[split])
    again = sample_matcher_data(md, 400, seed=7, present=present)[0]
    assert again.tables["train"]["suggestion_id"].tolist() == s.tables["train"]["suggestion_id"].tolist()
    assert sample_matcher_data(md, 400, seed=8, present=present)[0].tables["train"]["suggestion_id"].tolist() != s.tables["train"]["suggestion_id"].tolist()
    assert sample_matcher_data(md, 0)[0] is md and sample_matcher_data(md, 10_000)[0] is md


def test_zero_or_a_cap_above_the_rows_leaves_the_matcher_and_recommender_unchanged(small_models_run):
    """0 (the default) or a cap above the rows: the matcher's data are the very same object (so its training is unchanged), the
    default run trained on everything, and the recommender's metrics and lists are identical with the parameter absent or 0."""
    from thinkalike_ml.models import _toy_log, sample_matcher_data, train_recommender
    _, md, _ = _labelled_pairs()
    assert sample_matcher_data(md, 0)[0] is md and sample_matcher_data(md, 4000)[0] is md
    _, m = small_models_run
    assert m["matcher_train_rows_used"] == m["matcher_train_rows_available"] > 0
    assert m["recommender_train_users_used"] == m["recommender_train_users_available"] > 0
    log = _toy_log()
    p = {"seed": 0, "top_k": 5, "n_trials": 2}
    drop = lambda m: {k: v for k, v in m.items() if "seconds" not in k}
    r0 = train_recommender(log["interactions"], log["splits"], log["user_features"], p)
    r1 = train_recommender(log["interactions"], log["splits"], log["user_features"], p | {"recommender_train_max_users": 0})
    assert drop(r0.metrics()) == drop(r1.metrics())
    pd.testing.assert_frame_equal(r0.lists, r1.lists)


def test_recommender_fits_on_a_user_sample_but_evaluates_every_user():
    from thinkalike_ml.models import _toy_log, train_recommender
    log = _toy_log(n_users=200)
    p = {"seed": 0, "top_k": 5, "n_trials": 2}
    full = train_recommender(log["interactions"], log["splits"], log["user_features"], p)
    samp = train_recommender(log["interactions"], log["splits"], log["user_features"], p | {"recommender_train_max_users": 60})
    m = samp.metrics()
    assert m["recommender_train_users_used"] == 60 < m["recommender_train_users_available"] == full.metrics()["recommender_train_users_available"]
    hist = pd.concat([samp.data.train, samp.data.validation])
    assert m["recommender_train_interactions_used"] == hist["user_id"].isin(samp.data.fit_users).sum()  # whole histories
    assert set(samp.lists["user_id"]) == set(full.lists["user_id"]) and set(samp.relevant["user_id"]) == set(full.relevant["user_id"])
    assert samp.fitted["most_popular"].popularity_.sum() < full.fitted["most_popular"].popularity_.sum()  # fitted on fewer users
    again = train_recommender(log["interactions"], log["splits"], log["user_features"], p | {"recommender_train_max_users": 60})
    assert list(again.data.fit_users) == list(samp.data.fit_users)
    pd.testing.assert_frame_equal(again.lists, samp.lists)


def test_recommendation_lists_in_blocks_equal_one_block(monkeypatch):
    import thinkalike_ml.models as M
    log = M._toy_log(n_users=120)
    split = M.evaluation_split(log["interactions"], log["interactions"].sample(300, random_state=0))
    for model in (M.RandomRecommender(3), M.EASERecommender(5.0)):
        model.fit(split.data)
        whole = M.recommendation_lists(model, split.data, split.rows, 5)
        monkeypatch.setattr(M, "SCORING_BLOCK_USERS", 7)
        pd.testing.assert_frame_equal(M.recommendation_lists(model, split.data, split.rows, 5), whole)
        np.testing.assert_array_equal(M.recommend(model, split.data, split.rows, 5), split.data.items.get_indexer(whole["item_id"]).reshape(-1, 5))
        monkeypatch.undo()


@pytest.mark.parametrize("name,value,message", [
    ("matcher_train_max_rows", 50, "'matcher_train_max_rows': expected 0 (everything) or at least 100"),
    ("matcher_train_max_rows", -1, "parameter 'matcher_train_max_rows'"),
    ("matcher_train_max_rows", "many", "parameter 'matcher_train_max_rows': expected an integer"),
    ("recommender_train_max_users", 5, "'recommender_train_max_users': expected 0 (everything) or at least 20"),
    ("recommender_train_max_users", 2.5, "parameter 'recommender_train_max_users'"),
])
def test_bad_sample_sizes_are_refused_naming_the_parameter(name, value, message):
    from thinkalike_ml.config import ParamError, resolve_params
    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_params(overrides={name: value}, small=True)


def test_models_report_says_what_trained_on_a_sample(tmp_path, monkeypatch):
    """A small run with both caps: the stage's metrics carry the counts, and its executed report says what trained on a sample."""
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.models import TRAINING_SAMPLE
    from thinkalike_ml.pipeline import run_stage
    from thinkalike_ml.stages import execute_stage, stage
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = resolve_params(overrides=dict(n_users=400, n_trials=2, matcher_train_max_rows=600, recommender_train_max_users=150), small=True)
    run = RunDirectory.create(params, tmp_path)
    for s in ("data", "splits", "features"): execute_stage(run, s, params)
    run_stage(run, stage("models"), progress=False)
    m = json.loads(run.file("metrics.json").read_text())["models"]
    assert 600 <= m["matcher_train_rows_used"] <= 600 + 20 < m["matcher_train_rows_available"]
    assert m["recommender_train_users_used"] == 150 < m["recommender_train_users_available"]
    t = run.read_table(TRAINING_SAMPLE).set_index("model")
    assert t.loc["matcher", "trained on"] == t.loc["recommender", "trained on"] == "a sample"
    text = run.file("notebooks/04_models.ipynb").read_text()
    assert f"matcher: trained on a sample ({m['matcher_train_rows_used']:,.0f} of {m['matcher_train_rows_available']:,.0f} training pairs" in text
    assert f"recommender: trained on a sample (150 of {m['recommender_train_users_available']:,.0f} users with history" in text
    assert "scored and evaluated on all" in text


def test_the_run_parameters_are_logged_as_before_in_batches(small_models_run, tmp_path):
    """The MLflow run gets every run parameter as the string `log_param` would have stored (lists and dicts as JSON), logged in
    batches of at most MLflow's 100 (a store with more parameters than one batch holds included)."""
    import mlflow
    from thinkalike_ml.tracking import _PARAMS_PER_BATCH, _log_run_params
    run, _ = small_models_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    logged = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"]).data.params
    for k, v in run.params.items(): assert logged[k] == (json.dumps(v) if isinstance(v, (dict, list)) else str(v)), k
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    r = client.create_run(client.create_experiment("batches", artifact_location=(tmp_path / "a").as_uri()))
    many = {f"p{i:03d}": [i] if i % 3 == 0 else i / 7 if i % 3 == 1 else None for i in range(_PARAMS_PER_BATCH + 50)}
    _log_run_params(client, r.info.run_id, many)
    assert client.get_run(r.info.run_id).data.params == {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in many.items()}


def test_the_logged_dataset_schema_is_mlflows_inference_on_every_row(small_models_run):
    """The models stage infers the logged dataset's schema from `schema_rows` (a few rows): the schema MLflow records equals its inference
    on the whole table, here and on typed tables with missing values of every kind."""
    import mlflow
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.models import schema_rows
    run, _ = small_models_run
    data = load_dataset(run)
    full = lambda df: mlflow.data.from_pandas(df, source=str(run.path), digest="x").schema
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    logged = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"]).inputs.dataset_inputs
    assert len(logged) == 1 and json.loads(logged[0].dataset.schema) == {"mlflow_colspec": full(data["suggestions"]).to_dict()}
    rng = np.random.default_rng(0)
    typed = pd.DataFrame({"s": pd.array(rng.choice(["a", "b", None], 500), dtype="str"), "f": np.where(rng.random(500) < 0.1, np.nan, 1.0),
                          "i": np.arange(500), "b": rng.random(500) < 0.5, "t": pd.to_datetime(np.where(rng.random(500) < 0.1, None, "2025-01-01")),
                          "n": pd.array(np.where(rng.random(500) < 0.1, None, 1), dtype="Int64")})
    for df in [data["suggestions"], data["interactions"], typed, typed.iloc[::-1], typed.dropna(), typed.head(0)]:
        assert full(schema_rows(df)) == full(df), df.dtypes
