"""The evaluation stage: metrics against scikit-learn and hand-computed values, the vectorised bootstrap, A/B design,
analysis and its calibration by simulation (seeded), and a small end-to-end run that reads stored predictions only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from thinkalike_ml.evaluation import (EVALUATION_TABLES, ab_calibration, ab_design, bootstrap, choose_threshold,
                                      classification_metrics, load_evaluation, paired_comparison, pocock_boundary,
                                      recommender_evaluation, recommender_relevance, two_proportion_ztest,
                                      user_ranking_metrics, weighted_classification_metrics, welch_ttest)


def _pairs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n).round(3)  # rounded: ties, as calibrated scores have
    y = (rng.random(n) < p).astype(int)
    return y, p


def test_weighted_metrics_equal_scikit_learn_with_sample_weights():
    y, p = _pairs()
    d = (p >= 0.3).astype(int)
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    got = {k: v[0] for k, v in weighted_classification_metrics(y, p, d, w).items()}
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w), abs=1e-12)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), abs=1e-12)
    for name, f in (("accuracy", skm.accuracy_score), ("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert got[name] == pytest.approx(f(y, d, sample_weight=w), abs=1e-12), name
    # a resample is the same as scoring the duplicated rows
    idx = np.repeat(np.arange(len(y)), w.astype(int))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y[idx], p[idx]), abs=1e-12)
    assert classification_metrics(y, p, 0.3)["f1"] == pytest.approx(skm.f1_score(y, d))


def test_ece_and_threshold_by_hand():
    assert classification_metrics([0, 1, 1, 0], [.1, .2, .85, .95])["ece"] == pytest.approx((.1 + .8 + .15 + .95) / 4)  # one pair per bin
    assert choose_threshold([0, 0, 1, 1], [.1, .4, .35, .8]) == .35


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        x = rng.normal(0, 1, 60)
        s = bootstrap(lambda W: {"m": W @ x / W.sum(1)}, 60, 400, seed=int(rng.integers(1 << 30)))["m"]
        lo, hi = np.percentile(s, [2.5, 97.5])
        hits += lo <= 0 <= hi
    assert 0.88 <= hits / 200 <= 0.99  # percentile intervals of a mean undercover slightly at n = 60


def test_paired_comparison_sees_a_small_consistent_difference_that_unpaired_intervals_miss():
    y, p = _pairs(3000, 5)
    better = np.clip(p + 0.02 * (2 * y - 1), 0, 1)  # slightly better on every pair
    s = bootstrap(lambda W: {"a": weighted_classification_metrics(y, better, y, W)["brier"],
                             "b": weighted_classification_metrics(y, p, y, W)["brier"]}, len(y), 300, seed=0)
    c = paired_comparison(s["a"], s["b"], float(np.mean((better - y) ** 2) - np.mean((p - y) ** 2)), "brier")
    assert c["significant"] and c["improvement"] > 0 and c["p_value"] < 0.01


def test_ranking_metrics_by_hand_and_against_scikit_learn():
    u = user_ranking_metrics([[1, 0, 1], [0, 1, 0]], [2, 3])
    assert u["ndcg"].tolist() == pytest.approx([1.5 / (1 + 1 / np.log2(3)), (1 / np.log2(3)) / (1 + 1 / np.log2(3) + .5)])
    assert u["map"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 1 / 6])
    assert u["mrr"].tolist() == [1.0, 0.5]
    rng = np.random.default_rng(0)
    true = (rng.random((50, 20)) < 0.2).astype(int); true[:, 0] = 1
    score = rng.random((50, 20))
    order = np.argsort(-score, 1)[:, :5]
    hits = np.take_along_axis(true, order, 1)
    assert user_ranking_metrics(hits, true.sum(1))["ndcg"].mean() == pytest.approx(skm.ndcg_score(true, score, k=5), abs=1e-12)


def test_relevance_excludes_items_seen_in_training_and_k_beyond_the_catalogue():
    inter = pd.DataFrame({"interaction_id": range(8), "user_id": list("aabbabbc"), "item_id": list("xyxyyzxx")})
    splits = pd.DataFrame({"interaction_id": range(8), "split": ["train"] * 4 + ["test"] * 4})
    train, rel, info = recommender_relevance(inter, splits)
    assert rel.values.tolist() == [] and info["seen_share"] == 1.0  # every test pair was seen (z is not in the catalogue)
    splits.loc[2, "split"] = "test"  # b's x moves to test, so it is no longer seen
    train, rel, info = recommender_relevance(inter, splits)
    assert sorted(map(tuple, rel.values)) == [("b", "x")]
    lists = pd.DataFrame({"user_id": ["b"] * 3, "model": "m", "rank": [1, 2, 3], "item_id": ["x", "y", "y"], "score": [1, 0.5, -np.inf]})
    ev = recommender_evaluation(lists, rel, train, None, "m", k=50, n_resamples=50)  # K = 50, catalogue of 2 items
    v = ev.metrics.set_index("metric")["value"]
    assert v["ndcg"] == 1.0 and v["precision"] == 1.0 and v["mrr"] == 1.0  # b can be shown only one unseen item, and it is a hit


def test_ab_design_known_answer_and_closed_form():
    d = ab_design(0.26, 0.02, 0.05, 0.8, daily_traffic=500)
    assert d["n_control"] == d["n_treatment"] == 7733 and d["days"] == np.ceil(2 * 7733 / 500)
    h = 2 * np.arcsin(np.sqrt(0.28)) - 2 * np.arcsin(np.sqrt(0.26))
    # the closed form ignores the far tail of the two-sided test, which the exact solution counts (0.02 of a unit here)
    assert d["n_control_exact"] == pytest.approx(2 * ((stats.norm.ppf(.975) + stats.norm.ppf(.8)) / h) ** 2, abs=0.05)
    assert ab_design(10.0, 0.5, sd=5.0)["n_control"] == int(np.ceil(2 * ((stats.norm.ppf(.975) + stats.norm.ppf(.8)) / 0.1) ** 2))
    with pytest.raises(ValueError, match="allocation"): ab_design(0.26, 0.02, allocation=0)


def test_ab_analysis_matches_statsmodels_and_scipy():
    z, p = two_proportion_ztest(2600, 10000, 2800, 10000)
    assert z == pytest.approx(3.1855, abs=1e-4) and p == pytest.approx(0.001445, abs=1e-6)  # statsmodels' proportions_ztest
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 30), rng.normal(0.3, 3, 80)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert welch_ttest(a.mean(), a.var(ddof=1), 30, b.mean(), b.var(ddof=1), 80) == pytest.approx((ref.statistic, ref.pvalue))
    assert pocock_boundary(5) == pytest.approx(2.413, abs=0.002)


def test_ab_simulations_are_calibrated_with_a_seed():
    """1,000 A/A and 1,000 A/B experiments at the design size on a generator-like pool of acceptance probabilities."""
    pool = np.random.default_rng(0).beta(1.2, 3.4, 20_000)  # mean about 0.26, like the generator's suggestions
    ab = ab_calibration(pool, 0.02, 2000, n_simulations=1000, looks=5, seed=0)
    r = ab.calibration.set_index(["scenario", "rule"])["rate"]
    aa, lift = "A/A (no difference)", "A/B (true lift = MDE)"
    assert 0.035 <= r[(aa, "fixed_horizon")] <= 0.065
    assert 0.035 <= r[(aa, "pocock_guard")] <= 0.065
    assert r[(aa, "naive_peeking")] > 0.08  # peeking without the guard inflates the false-positive rate
    assert abs(r[(lift, "fixed_horizon")] - 0.8) <= 0.05


@pytest.fixture(scope="module")
def small_evaluation_run():
    """The evaluation stage on the small profile's cached upstream (data, splits, features, models), run on its own copy."""
    from thinkalike_ml.stages import execute_stage, open_stage
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, params = open_stage(None, "evaluation")  # the small profile: its upstream is the cached one the notebook uses
    before = dict(run.checksums())
    # evaluation must never retrain a stored model: a fit of a matcher or a recommender fails the run, except inside the
    # validation-strategy comparisons, which refit fresh clones on purpose (and must really refit them)
    import sys

    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from thinkalike_ml import models
    allowed, refits = {"compare_validation_strategies", "compare_recommender_validation"}, []
    def guarded(fit):
        def checked(self, *a, **k):
            f = sys._getframe(1)
            while f is not None and f.f_code.co_name not in allowed: f = f.f_back
            if f is None: raise AssertionError(f"the evaluation stage fitted a {type(self).__name__} outside the validation-strategy comparisons")
            refits.append(f.f_code.co_name)
            return fit(self, *a, **k)
        return checked
    def subclasses(c): return [c] + [s for d in c.__subclasses__() for s in subclasses(d)]
    with pytest.MonkeyPatch.context() as no_fit:
        for cls in (*subclasses(models.Recommender), LogisticRegression, HistGradientBoostingClassifier, CalibratedClassifierCV, Pipeline):
            if "fit" in vars(cls): no_fit.setattr(cls, "fit", guarded(vars(cls)["fit"]))
        metrics = execute_stage(run, "evaluation", params)
    assert set(refits) == allowed  # both comparisons refit clones (a frozen model's fit would do nothing)
    yield run, metrics, before
    mp.undo()


def test_evaluation_stage_reads_stored_predictions_and_reports_intervals(small_evaluation_run):
    run, m, before = small_evaluation_run
    assert all(np.isfinite(v) for v in m.values())
    for fam, metric in (("matcher", "roc_auc"), ("matcher", "log_loss"), ("recommender", "ndcg"), ("recommender", "mrr")):
        assert m[f"{fam}_test_{metric}_ci_low"] <= m[f"{fam}_test_{metric}"] <= m[f"{fam}_test_{metric}_ci_high"], (fam, metric)
    assert 0 < m["recommender_seen_share"] < 1
    assert m["ab_n_per_arm"] > 0 and m["ab_simulations"] == run.params["ab_simulations"]
    ev = load_evaluation(run)
    assert set(EVALUATION_TABLES) <= set(ev) and len(ev["validation_summary"]) == 5 and len(ev["tuning_edges"]) >= 1
    assert ev["validation_summary"]["folds"].max() == min(run.params["n_folds"], run.params["validation_folds"])  # the fast comparison
    assert set(ev["recommender_validation_summary"]["strategy"]) == {"holdout", "kfold_users", "time_based"}
    # the generator's interactions carry star ratings, so the rating predictor is evaluated on the default data, with its baselines
    assert "rating" not in ev["summary"]["skipped"] and "rating_skipped" not in m
    for metric in ("mse", "rmse", "mae", "r2"):
        assert m[f"rating_test_{metric}_ci_low"] <= m[f"rating_test_{metric}"] <= m[f"rating_test_{metric}_ci_high"], metric
        assert all(f"rating_test_{b}_{metric}" in m for b in ("global_mean", "user_mean", "item_mean")), metric
    assert m["rating_rating_min"] == 1 and m["rating_rating_max"] == 5 and m["rating_test_r2"] > 0
    assert {k: v for k, v in run.checksums().items() if k in before} == before  # the models' artifacts are untouched
    assert run.metrics()["evaluation"] == m
    # the recomputed relevance holds no pair the user had in training
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.splits import load_splits
    train, rel, _ = recommender_relevance(load_dataset(run)["interactions"], load_splits(run)["interactions"])
    assert not len(rel.merge(train, on=["user_id", "item_id"]))
    h = ev["headline"]
    assert set(h["family"]) == {"matcher", "recommender", "rating"}
    assert h.loc[h.metric == "roc_auc", "baseline"].iloc[0] in ("prior", "value_similarity")


def test_evaluation_is_logged_to_the_runs_mlflow_run(small_evaluation_run):
    import json

    import mlflow
    run, m, _ = small_evaluation_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    r = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"])
    assert r.data.metrics["evaluation.matcher_test_roc_auc_ci_low"] == pytest.approx(m["matcher_test_roc_auc_ci_low"])
    assert r.data.tags["thinkalike.stage.evaluation"] == "tracked"


def test_regression_metrics_equal_scikit_learn_on_any_rating_scale():
    """A 1-5 star column (not MovieTweetings' 0-10): the bias model's metrics equal scikit-learn's and it beats every baseline."""
    from thinkalike_ml.evaluation import (RATING_MODEL, bootstrap_units, evaluate_ratings, regression_metrics, unit_sums,
                                          weighted_regression_metrics)
    rng = np.random.default_rng(4)
    n, nu, ni = 20_000, 400, 150
    u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
    stars = np.clip(np.rint(3 + rng.normal(0, .8, nu)[u] + rng.normal(0, .8, ni)[i] + rng.normal(0, .7, n)), 1, 5)
    inter = pd.DataFrame({"interaction_id": [f"i{j}" for j in range(n)], "user_id": [f"u{x}" for x in u], "item_id": [f"c{x}" for x in i], "rating": stars})
    splits = pd.DataFrame({"interaction_id": inter["interaction_id"], "split": rng.choice(["train", "validation", "test"], n, p=[.7, .1, .2])})
    ev = evaluate_ratings({"data": {"interactions": inter}, "splits": {"interactions": splits}}, 200, 0)
    v = ev.metrics.set_index(["model", "metric"])["value"]
    assert ev.info["rating_min"] == 1 and ev.info["rating_max"] == 5
    assert ev.comparisons["significant"].all() and v[(RATING_MODEL, "rmse")] < v[("global_mean", "rmse")]
    assert abs(v[("global_mean", "r2")]) < 0.01  # the global mean explains nothing
    y, p = stars[:500], rng.normal(3, 1, 500)
    w = rng.integers(0, 3, 500).astype(float)
    got = {k: x[0] for k, x in weighted_regression_metrics(unit_sums(np.arange(500), y, p), w).items()}
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p, sample_weight=w))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p, sample_weight=w))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p, sample_weight=w))
    assert regression_metrics(y, p)["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p))
    groups = bootstrap_units(500, max_units=100, n_groups=40)  # groups sum exactly: all rows once = every group once
    assert weighted_regression_metrics(unit_sums(groups, y, p), np.ones(40))["mae"][0] == pytest.approx(skm.mean_absolute_error(y, p))
    # no numeric rating: skipped, not failed
    assert evaluate_ratings({"data": {"interactions": inter.drop(columns="rating")}, "splits": {"interactions": splits}}, 50, 0) is None
    assert evaluate_ratings({"data": {"interactions": inter.assign(rating=np.nan)}, "splits": {"interactions": splits}}, 50, 0) is None


@pytest.mark.slow
def test_movietweetings_ratings_are_evaluated(tmp_path):
    """The bundled MovieTweetings sample: its 0-10 ratings through the data and splits stages, then the rating evaluation."""
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.evaluation import RATING_MODEL, evaluate_ratings
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.splits import load_splits
    from thinkalike_ml.stages import execute_stage
    params = resolve_params(overrides=dict(dataset_store="", source="movietweetings"))
    run = RunDirectory.create(params, tmp_path)
    for s in ("data", "splits"): execute_stage(run, s, params)
    ev = evaluate_ratings({"data": load_dataset(run), "splits": load_splits(run)}, 200, 0)
    v = ev.metrics.set_index(["model", "metric"])
    assert 0 <= ev.info["rating_min"] and ev.info["rating_max"] <= 10 and ev.info["test_ratings"] > 1000
    assert v.loc[(RATING_MODEL, "rmse"), "ci_high"] < v.loc[("global_mean", "rmse"), "ci_low"]
    assert ev.comparisons.set_index("metric").loc["rmse", "significant"]


def test_grouped_bootstrap_keeps_point_values_and_interval_widths():
    """Above max_units the matcher's pairs are resampled in random groups with rounded probabilities: same points, similar widths."""
    from thinkalike_ml.evaluation import MatcherFrames, matcher_evaluation
    rng = np.random.default_rng(2)
    n = 6000
    truth = rng.beta(2, 5, n)
    y = (rng.random(n) < truth).astype(int)
    a, b = np.clip(truth + rng.normal(0, .1, n), 0.001, .999), np.clip(truth + rng.normal(0, .2, n), 0.001, .999)
    prob = pd.DataFrame({"strong": a, "weak": b, "prior": np.full(n, y.mean())})
    frames = MatcherFrames(prob, prob, y, prob, y)
    rows = matcher_evaluation(frames, "strong", 300, 0)
    groups = matcher_evaluation(frames, "strong", 300, 0, max_units=1000, n_groups=500)
    assert rows.n_units == n and groups.n_units == 500
    r, g = (e.metrics.set_index(["model", "metric"]) for e in (rows, groups))
    assert np.allclose(r["value"].fillna(-1), g["value"].fillna(-1), atol=1e-10)
    width = lambda t, k: t.loc[k, "ci_high"] - t.loc[k, "ci_low"]
    for k in (("strong", "roc_auc"), ("strong", "log_loss"), ("weak", "brier"), ("strong", "f1")):
        assert 0.7 < width(g, k) / width(r, k) < 1.4, k
    c = groups.comparisons.set_index(["model", "reference", "metric"])
    assert c.loc[("strong", "prior", "roc_auc"), "significant"]


def test_matcher_frames_equal_a_pivot():
    from thinkalike_ml.evaluation import matcher_frames
    rng = np.random.default_rng(0)
    ids = [f"s{j:03d}" for j in rng.permutation(60)]
    split = np.where(np.arange(60) < 20, "validation", "test")
    rows = [pd.DataFrame({"suggestion_id": ids, "split": split, "model": m, "calibrated": False, "p": rng.random(60), "accepted": np.arange(60) % 2})
            for m in ("value_similarity", "logreg", "prior")]
    rows.append(rows[1].assign(calibrated=True, p=rng.random(60)))
    rows.append(rows[0].assign(model="oracle")[split == "test"])
    pred = pd.concat(rows, ignore_index=True).sample(frac=1, random_state=0)
    f = matcher_frames(pred)
    t = pred[pred["split"] == "test"]
    raw = t[~t["calibrated"]].pivot(index="suggestion_id", columns="model", values="p")
    pd.testing.assert_frame_equal(f.raw, raw, check_names=False)
    assert f.prob["logreg"].tolist() == t[t["calibrated"]].set_index("suggestion_id")["p"].reindex(raw.index).tolist()
    assert f.y.tolist() == t.drop_duplicates("suggestion_id").set_index("suggestion_id")["accepted"].reindex(raw.index).tolist()
    assert list(f.val_raw.columns) == ["logreg", "prior", "value_similarity"] and len(f.val_y) == 20


def test_recommender_validation_folds_and_comparison_refit_clones():
    from thinkalike_ml.evaluation import compare_recommender_validation, recommender_validation_folds
    from thinkalike_ml.models import MostPopularRecommender, interaction_data
    rng = np.random.default_rng(0)
    n = 3000
    dev = pd.DataFrame({"user_id": [f"u{x}" for x in rng.integers(0, 150, n)], "item_id": [f"c{x}" for x in rng.zipf(1.6, n) % 60],
                        "timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.random(n) * 90, unit="D")})
    for tr, va in recommender_validation_folds(dev, "kfold_users", 3):
        inside = set(dev.user_id.iloc[va])
        assert len(np.intersect1d(tr, va)) == 0 and len(va) < 0.25 * n and len(inside) <= 60
    for tr, va in recommender_validation_folds(dev, "time_based", 3):
        assert dev.timestamp.iloc[tr].max() <= dev.timestamp.iloc[va].min()
    stored = MostPopularRecommender().fit(interaction_data(dev))
    before = stored.popularity_.copy()
    folds = compare_recommender_validation(dev, stored, k=5, n_folds=3)
    assert set(folds["strategy"]) == {"holdout", "kfold_users", "time_based"} and folds["ndcg"].between(0, 1).all()
    assert np.array_equal(stored.popularity_, before)  # the stored model is cloned, never refitted


def test_tuning_edges_cover_every_tuned_recommender():
    from thinkalike_ml.evaluation import edge_flags, tuning_edges
    from thinkalike_ml.models import EASE_L2_RANGE, EASERecommender
    class Package: model = EASERecommender(300.0)
    trials = pd.DataFrame({"model": ["ease", "ease", "item_knn", "item_knn", "trending"], "l2": [300.0, EASE_L2_RANGE[1], None, None, None],
                           "n_neighbors": [None, None, 50, 10, None], "half_life_days": [None] * 4 + [14.0], "cv_ndcg@10": [.2, .1, .15, .16, .1]})
    e = tuning_edges({"matcher": None, "recommender": Package()}, trials).set_index("model")
    assert e.loc["recommender ease", "chosen"] == 300.0 and e.loc["recommender ease", "selected"] and not e.loc["recommender ease", "at_edge"]
    assert e.loc["recommender item_knn", "chosen"] == 10 and e.loc["recommender item_knn", "at_edge"]  # its best trial is the grid's first point
    assert not e.loc["recommender trending", "at_edge"]
    assert len(edge_flags(e.reset_index())) == 1
    # without the trials table, only the stored (selected) model is known
    assert tuning_edges({"matcher": None, "recommender": Package()})["model"].tolist() == ["recommender ease"]
