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
    assert set(ev["recommender_validation_summary"]["strategy"]) == {"holdout", "kfold_users", "time_based"}
    assert ev["summary"]["skipped"]["rating"].startswith("the interactions carry no numeric 'rating'") and m["rating_skipped"] == 1.0
    assert {k: v for k, v in run.checksums().items() if k in before} == before  # the models' artifacts are untouched
    assert run.metrics()["evaluation"] == m
    # the recomputed relevance holds no pair the user had in training
    from thinkalike_ml.data import load_dataset
    from thinkalike_ml.splits import load_splits
    train, rel, _ = recommender_relevance(load_dataset(run)["interactions"], load_splits(run)["interactions"])
    assert not len(rel.merge(train, on=["user_id", "item_id"]))
    h = ev["headline"]
    assert set(h["family"]) == {"matcher", "recommender"}
    assert h.loc[h.metric == "roc_auc", "baseline"].iloc[0] in ("prior", "value_similarity")


def test_evaluation_is_logged_to_the_runs_mlflow_run(small_evaluation_run):
    import json

    import mlflow
    run, m, _ = small_evaluation_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    r = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"])
    assert r.data.metrics["evaluation.matcher_test_roc_auc_ci_low"] == pytest.approx(m["matcher_test_roc_auc_ci_low"])
    assert r.data.tags["thinkalike.stage.evaluation"] == "tracked"
