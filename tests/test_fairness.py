"""The fairness stage: summaries against fairlearn, the cell bootstrap against a row bootstrap, the library on data the
pipeline did not make, mitigation on a biased toy, ranking metrics against the models stage's, and a small end-to-end run
that reads stored predictions only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (demographic_parity_difference, demographic_parity_ratio, equal_opportunity_difference,
                               equalized_odds_difference)

from thinkalike_ml.fairness import (FAIRNESS_TABLES, _grouped_table, _metricframe_table, _vectorised_table, bias_tests, MISSING_GROUP, PAIR_SIDES, POOLED_GROUP, SUMMARY_METRICS,
                                    available_attributes, bootstrap_cells, classifier_scores, confusion_cells,
                                    fairness_report, fairness_summary, group_metrics, holm, list_hits, load_fairness,
                                    mitigate_exponentiated_gradient, mitigate_reweighing, mitigate_threshold_optimizer,
                                    pair_attributes, pool_small_groups, reweighing_weights, summaries_from_cells,
                                    traffic_light)


def _decisions(n=4000, seed=0, groups="abcde"):
    rng = np.random.default_rng(seed)
    g = rng.choice(list(groups), n, p=np.linspace(1, 2, len(groups)) / np.linspace(1, 2, len(groups)).sum())
    y = (rng.random(n) < np.where(g == groups[0], .2, .35)).astype(int)
    d = (rng.random(n) < np.where(y == 1, .7, .25) * np.where(g == groups[-1], .8, 1)).astype(int)
    return y, d, g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summaries_equal_fairlearns_metric_functions(seed):
    y, d, g = _decisions(seed=seed)
    s = summaries_from_cells(confusion_cells(y, d, g)[1])
    assert s["dp_difference"] == pytest.approx(demographic_parity_difference(y, d, sensitive_features=g), abs=1e-12)
    assert s["dp_ratio"] == pytest.approx(demographic_parity_ratio(y, d, sensitive_features=g), abs=1e-12)
    assert s["eo_difference"] == pytest.approx(equalized_odds_difference(y, d, sensitive_features=g), abs=1e-12)
    assert s["eopp_difference"] == pytest.approx(equal_opportunity_difference(y, d, sensitive_features=g), abs=1e-12)
    assert s["accuracy"] == pytest.approx((y == d).mean(), abs=1e-12)


def test_cell_bootstrap_has_the_distribution_of_a_row_bootstrap():
    y, d, g = _decisions(600, seed=3)
    labels, cells = confusion_cells(y, d, g)
    by_cells = summaries_from_cells(bootstrap_cells(cells, 3000, seed=1))["dp_difference"]
    rng = np.random.default_rng(2)
    by_rows = []
    for _ in range(1500):
        i = rng.integers(0, len(y), len(y))
        by_rows.append(summaries_from_cells(confusion_cells(y[i], d[i], g[i])[1])["dp_difference"])
    assert np.mean(by_cells) == pytest.approx(np.mean(by_rows), abs=0.006)
    assert np.std(by_cells) == pytest.approx(np.std(by_rows), rel=0.1)


def test_bootstrap_of_a_million_rows_costs_the_same_as_of_a_hundred():
    cells = np.array([[400_000, 100_000, 50_000, 150_000], [150_000, 50_000, 25_000, 75_000]])
    b = bootstrap_cells(cells, 1000, seed=0)
    assert b.shape == (1000, 2, 4) and (b.sum((1, 2)) == cells.sum()).all()
    s = summaries_from_cells(b)["dp_difference"]
    assert np.percentile(s, 2.5) < 125_000 / 300_000 - 250_000 / 700_000 < np.percentile(s, 97.5)


def test_small_groups_are_reported_flagged_and_left_out_of_the_summaries():
    y, d, g = _decisions(3000, seed=4)
    g = g.astype(object)
    g[:12] = "tiny"
    gm = group_metrics(y, d * .6 + .2, g, .5, min_group_size=30).set_index("group")
    assert gm.loc["tiny", "small"] and gm.loc["tiny", "size"] == 12 and not gm.drop(index="tiny")["small"].any()
    s = fairness_summary(y, d, g, min_group_size=30, n_bootstrap=0)
    big = g != "tiny"
    assert s.attrs["small_groups"] == ["tiny"] and s.attrs["n_judged"] == 5
    assert s.set_index("metric").loc["dp_difference", "value"] == pytest.approx(
        demographic_parity_difference(y[big], d[big], sensitive_features=g[big]), abs=1e-12)


def test_the_library_on_a_data_set_the_pipeline_did_not_make():
    """A fitted scikit-learn classifier on a synthetic credit-like frame with two sensitive columns, one partly missing."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(7)
    n = 5000
    frame = pd.DataFrame({"income": rng.normal(50, 15, n), "debt": rng.normal(10, 5, n),
                          "sex": rng.choice(["F", "M"], n), "age_group": rng.choice(["young", "old", None], n, p=[.45, .45, .1])})
    frame["income"] -= np.where(frame["sex"] == "F", 8, 0)  # a historical disparity carried by a feature
    y = (rng.random(n) < 1 / (1 + np.exp(-(frame["income"] - frame["debt"] - 40) / 8))).astype(int)
    X = frame[["income", "debt"]]
    clf = LogisticRegression().fit(X, y)
    present, absent = available_attributes(frame, ["sex", "age_group", "missing_col"])
    assert absent == ["missing_col"]
    groups, summary = fairness_report(y, classifier_scores(clf, X), frame[present], threshold=0.5, n_bootstrap=300, seed=0)
    assert set(groups["attribute"]) == {"sex", "age_group"} and MISSING_GROUP in set(groups["group"])
    assert set(summary["metric"]) == set(SUMMARY_METRICS)
    dp = summary[(summary.attribute == "sex") & (summary.metric == "dp_difference")].iloc[0]
    d = (classifier_scores(clf, X) >= .5).astype(int)
    assert dp["value"] == pytest.approx(demographic_parity_difference(y, d, sensitive_features=frame["sex"]), abs=1e-12)
    assert dp["value"] > 0.05 and dp["ci_low"] > 0  # the disparity carried by income is found
    sex = groups[groups.attribute == "sex"].set_index("group")
    assert sex.loc["F", "selection_rate"] < sex.loc["M", "selection_rate"]
    assert abs(sex.loc["F", "calibration_gap"]) < 0.05  # the model is calibrated within each group
    lights = traffic_light(summary, 0.05)
    assert lights.loc[(lights.attribute == "sex") & (lights.metric == "dp_difference"), "status"].item() == "red"


def test_group_metrics_auc_is_undefined_for_a_one_class_group_and_calibration_is_mean_minus_rate():
    y = np.array([0, 0, 1, 1, 0, 0])
    p = np.array([.1, .4, .6, .9, .3, .5])
    g = np.array(["a", "a", "a", "a", "b", "b"])
    gm = group_metrics(y, p, g, 0.45, min_group_size=1).set_index("group")
    assert gm.loc["a", "auc"] == 1.0 and np.isnan(gm.loc["b", "auc"])
    assert gm.loc["b", "calibration_gap"] == pytest.approx(.4)
    assert gm.loc["a", "tpr"] == 1.0 and gm.loc["a", "fpr"] == 0.0 and gm.loc["b", "selection_rate"] == .5


def test_the_vectorised_group_table_equals_metricframes():
    y, d, g = _decisions(5000, seed=8)
    p = np.clip(np.random.default_rng(8).beta(2, 4, 5000) + .2 * y, 0, 1).round(3)
    g = g.astype(object)
    g[:20] = "one_class"; y[:20] = 0  # AUC undefined in this group
    from thinkalike_ml.fairness import group_labels
    mf = _metricframe_table(y, p, group_labels(g), .35)
    pd.testing.assert_frame_equal(mf, _vectorised_table(y, p, group_labels(g), .35), check_dtype=False, atol=1e-12)
    assert np.isnan(mf.set_index("group").loc["one_class", "auc"])


def test_the_grouped_table_is_metricframes_value_for_value():
    "What `group_metrics` computes up to METRICFRAME_MAX_ROWS: fairlearn's table exactly (dtypes, group order, every bit)."
    y, d, g = _decisions(5000, seed=9)
    p = np.clip(np.random.default_rng(9).beta(2, 4, 5000) + .2 * y, 0, 1)  # unrounded: any change of summation order would show
    g = g.astype(object)
    g[:20] = "one_class"; y[:20] = 0
    g[20:25] = "tiny"; y[20:25] = 1  # one class the other way: FPR undefined
    from thinkalike_ml.fairness import group_labels
    pd.testing.assert_frame_equal(_metricframe_table(y, p, group_labels(g), .35), _grouped_table(y, p, group_labels(g), .35), check_exact=True)


def test_the_detector_names_the_penalised_group_on_both_sides_and_no_other():
    rng = np.random.default_rng(11)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(2000)], "region": rng.choice(list("NSEW"), 2000),
                          "gender": rng.choice(["f", "m"], 2000)})
    a, b = rng.integers(0, 2000, 40_000), rng.integers(0, 2000, 40_000)
    pen = (users["region"].to_numpy()[a] == "S").astype(int) + (users["region"].to_numpy()[b] == "S")
    rows = pd.DataFrame({"user_a": users["user_id"].to_numpy()[a], "user_b": users["user_id"].to_numpy()[b],
                         "accepted": (rng.random(40_000) < .3 * np.exp(-.3 * pen)).astype(int)})
    test_rows = rows.iloc[:3000].assign(p=.3)
    t = bias_tests(rows, test_rows, users, ["region", "gender"], 30)
    named = t[t["disadvantaged"]]
    assert set(zip(named["kind"], named["side"], named["attribute"], named["group"])) == {
        ("data", "suggested", "region", "S"), ("data", "receiver", "region", "S")}
    assert (named["effect"] < -0.02).all() and (t["p_holm"] >= t["p_value"]).all()


def test_pairs_have_two_sides_and_missing_attributes_are_their_own_group():
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "region": ["N", "S", None], "gender": ["f", "f", "m"]})
    pairs = pd.DataFrame({"user_a": ["u1", "u2", "u3"], "user_b": ["u2", "u1", "u1"]})
    sides = pair_attributes(pairs, users, ["region", "gender"])
    assert tuple(sides) == PAIR_SIDES
    assert list(sides["receiver"]["region"]) == ["N", "S", MISSING_GROUP]
    assert list(sides["suggested"]["region"]) == ["S", "N", "N"]
    assert list(sides["same_vs_cross"]["gender"]) == ["same", "same", "cross"]


def test_holm_matches_statsmodels_when_available_else_by_hand():
    p = np.array([0.001, 0.02, 0.03, 0.2, 0.01])
    assert holm(p).tolist() == pytest.approx([0.005, 0.06, 0.06, 0.2, 0.04])


def test_reweighing_makes_label_independent_of_group():
    y, _, g = _decisions(5000, seed=5)
    w = reweighing_weights(y, g)
    rates = pd.DataFrame({"y": y, "g": g, "w": w}).groupby("g").apply(lambda t: np.average(t.y, weights=t.w), include_groups=False)
    assert np.allclose(rates, y.mean()) and w.sum() == pytest.approx(len(y))


def test_post_processing_pools_groups_too_small_for_their_own_threshold():
    fit, apply = pool_small_groups(["a"] * 40 + ["b"] * 5, ["a", "b", "c"], [0, 1] * 20 + [1] * 5, 30)
    assert set(fit) == {"a", POOLED_GROUP} and list(apply) == ["a", POOLED_GROUP, POOLED_GROUP]


def test_every_mitigation_shrinks_an_injected_disparity():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    n = 8000
    g = np.where(rng.random(n) < .5, "a", "b")
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n) + (g == "b")})  # x2 leaks the group
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["x1"] - 1 - 0.8 * (g == "b"))))).astype(int)
    tr, va, te = slice(0, 4000), slice(4000, 6000), slice(6000, n)
    base = LogisticRegression().fit(X[tr], y[tr])
    def dp(d): return abs(d[g[te] == "a"].mean() - d[g[te] == "b"].mean())
    before = dp((classifier_scores(base, X[te]) >= y[tr].mean()).astype(int))
    after = {"reweighing": dp(mitigate_reweighing(X[tr], y[tr], g[tr], X[va], y[va], X[te])[1]),
             "exponentiated_gradient": dp(mitigate_exponentiated_gradient(X[tr], y[tr], g[tr], X[te])[1]),
             "threshold_optimizer": dp(mitigate_threshold_optimizer(base, X[va], y[va], g[va], X[te], g[te])[1])}
    assert before > 0.05
    assert all(v < before / 2 for v in after.values()), (before, after)


def test_the_new_mitigations_shrink_an_injected_disparity_and_their_probabilities_use_public_attributes():
    from sklearn.linear_model import LogisticRegression
    from thinkalike_ml.fairness import mitigate_correlation_remover
    rng = np.random.default_rng(1)
    n = 8000
    g = np.where(rng.random(n) < .5, "a", "b")
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n) + (g == "b")})  # x2 leaks the group
    # the label is penalised for b (a DP gap) and x1 predicts it far better for a than for b (an equalized-odds gap)
    y = (rng.random(n) < 1 / (1 + np.exp(-(np.where(g == "a", 3, .5) * X["x1"] - 1 - 0.8 * (g == "b"))))).astype(int)
    tr, va, te = slice(0, 4000), slice(4000, 6000), slice(6000, n)
    base = LogisticRegression().fit(X[tr], y[tr])
    def dp(d): return abs(d[g[te] == "a"].mean() - d[g[te] == "b"].mean())
    def eo(d): return equalized_odds_difference(y[te], d, sensitive_features=g[te])
    unmitigated = (classifier_scores(base, X[te]) >= y[tr].mean()).astype(int)
    before, before_eo = dp(unmitigated), eo(unmitigated)
    cr = mitigate_correlation_remover(X[tr], y[tr], g[tr], X[va], y[va], g[va], X[te], g[te])
    eg = mitigate_exponentiated_gradient(X[tr], y[tr], g[tr], X[te], constraint="equalized_odds")
    to = mitigate_threshold_optimizer(base, X[va], y[va], g[va], X[te], g[te], constraint="equalized_odds")
    assert dp(cr[1]) < before / 2, (before, dp(cr[1]))  # the pre-processing targets demographic parity
    assert before_eo > 0.05 and all(eo(r[1]) < before_eo / 2 for r in (eg, to)), (before_eo, eo(eg[1]), eo(to[1]))  # these, equalized odds
    np.testing.assert_allclose(eg[0], eg[2]._pmf_predict(X[te])[:, 1], atol=1e-12)  # the public reading equals fairlearn's private one
    np.testing.assert_allclose(to[0], to[2][0]._pmf_predict(X[te], sensitive_features=g[te])[:, 1], atol=1e-12)


def test_bootstrap_auc_equals_scikit_learns_and_its_interval_covers():
    from sklearn.metrics import roc_auc_score
    from thinkalike_ml.fairness import bootstrap_auc_calibration
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = np.round(np.clip(.3 * y + .7 * rng.random(2000), 0, 1), 2)  # ties on purpose
    r = bootstrap_auc_calibration(y, s, rng.choice(list("ab"), 2000), 300, 0)
    assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["auc_ci_low"] < r["auc"] < r["auc_ci_high"] and r["auc_ci_high"] - r["auc_ci_low"] < .1


def test_the_gate_noise_floor_is_what_a_disparity_free_model_shows():
    from thinkalike_ml.fairness import gate_noise_floor, gated_difference
    y, d, g = _decisions(n=20000, seed=4)
    fair = pd.DataFrame({"g": np.random.default_rng(5).permutation(g)})  # decisions independent of these groups
    nf = gate_noise_floor(y, d, fair, n_permutations=100, seed=0)
    assert 0 < nf["median"] < nf["p95"] and gated_difference(y, d, fair)[0] < nf["p95"] * 1.5
    assert gated_difference(y, d, pd.DataFrame({"g": g}))[0] > nf["p95"]  # the injected disparity stands out


def test_config_rejects_an_unknown_mitigation():
    from thinkalike_ml.config import ParamError, resolve_params
    with pytest.raises(ParamError, match="fairness_mitigations.*'magic'"):
        resolve_params(overrides={"fairness_mitigations": ["reweighing", "magic"]})


def test_the_saved_mitigated_matcher_reproduces_its_predictions_and_the_registry_gate_reads_it(small_fairness_run):
    from thinkalike_ml.fairness import load_mitigated_matcher
    from thinkalike_ml.registry import fairness_gate, fairness_row
    run, params, m, _ = small_fairness_run
    f = load_fairness(run)
    saved = f["summary"]["recommended_mitigation"].get("saved")
    if not saved:  # nothing recommended: then the stage must say why (unmitigated meets the threshold or nothing improves)
        mt = f["mitigation"]
        assert f["summary"]["recommended_mitigation"]["mitigation"] == "none"
        metric = f["summary"]["recommended_mitigation"]["metric"]  # the population DP's upper end (the gate's upper bound without population pairs)
        assert metric == ("population_dp_ci_high" if params["fairness_population_pairs"] else "gate_upper")
        base, cand = mt[metric].iloc[0], mt.iloc[1:]
        assert base <= params["fairness_threshold"] or cand.loc[cand["gate_verdict"] != "fail", metric].min() >= base
        return
    obj = load_mitigated_matcher(run)
    assert obj["mitigation"] == saved["mitigation"] and "model" in obj
    row = fairness_row(f, saved["mitigation"])  # what the registry's gate reads: the saved model's verdict and bounds
    gate = fairness_gate(row, params["fairness_threshold"])
    assert gate["status"] == {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}[saved["gate"]["verdict"]]
    assert gate["value"] == pytest.approx(saved["gated_difference"]) and row["gate_upper"] == pytest.approx(saved["gate"]["upper"])
    if saved["mitigation"] in ("reweighing", "correlation_remover"):  # deterministic: the saved model reproduces its stored scores
        from thinkalike_ml.features import load_features
        from thinkalike_ml.fairness import classifier_scores, pair_attributes, with_group_columns
        from thinkalike_ml.data import load_dataset
        pf = load_features(run)["pair_features"].set_index("suggestion_id")
        pr = f["mitigated_predictions"]
        X = pf.loc[pr["suggestion_id"], obj["columns"]].reset_index(drop=True)
        model = obj["model"][0]
        if saved["mitigation"] == "correlation_remover":
            g = pair_attributes(pf.loc[pr["suggestion_id"]].reset_index(), load_dataset(run)["users"], [obj["attribute"]])["suggested"][obj["attribute"]]
            X = with_group_columns(X, g, obj["model"][2])
        np.testing.assert_allclose(classifier_scores(model, X), pr["p"], atol=1e-12)


def test_population_pairs_are_seeded_reproducible_and_pair_distinct_people():
    from thinkalike_ml.fairness import population_pairs
    people = [f"u{i}" for i in range(50)][::-1]
    a, b = population_pairs(people, 5000, seed=3), population_pairs(people[::-1] + people[:5], 5000, seed=3)  # order and repeats do not matter
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(population_pairs(people, 5000, seed=4))
    assert (a["user_a"] != a["user_b"]).all() and set(a["user_a"]) | set(a["user_b"]) <= set(people)
    share = a["user_b"].value_counts(normalize=True)  # every person suggested about equally often
    assert len(share) == 50 and share.max() < 2 / 50
    with pytest.raises(ValueError, match="two distinct people"):
        population_pairs(["u1", "u1"], 10)


def _population(n_people=600, pairs=30_000, effect=0.0, seed=0):
    "Pairs whose decisions depend on a per-person propensity (people differ a lot) and, with `effect`, on the suggested person's group."
    from thinkalike_ml.fairness import population_pairs
    rng = np.random.default_rng(seed)
    people = np.array([f"p{i}" for i in range(n_people)], dtype=object)
    group = pd.Series(rng.choice(["a", "b", "c"], n_people, p=[.5, .35, .15]), index=people)
    propensity = pd.Series(rng.beta(2, 6, n_people), index=people)
    pp = population_pairs(people, pairs, seed)
    g = group.loc[pp["user_b"]].to_numpy()
    p = np.clip(propensity.loc[pp["user_b"]].to_numpy() - effect * (g == "c"), 0, 1)
    return (rng.random(pairs) < p).astype(int), pd.DataFrame({"g": g}), pp["user_b"]


def test_population_parity_reaches_zero_without_a_group_effect_and_covers_a_real_one():
    from thinkalike_ml.fairness import population_parity
    covered = [population_parity(*_population(seed=s), n_bootstrap=200, seed=s).set_index("attribute").loc["g", "dp_difference_ci_low"] == 0
               for s in range(20)]
    assert np.mean(covered) >= 0.85, covered  # no group effect: the interval reaches 0 (nominally in 97.5% of data sets)
    d, sens, who = _population(effect=0.1, seed=1)
    r = population_parity(d, sens, who, n_bootstrap=300, seed=1).set_index("attribute")
    assert 0 < r.loc["g", "dp_difference_ci_low"] and r.loc["g", "lowest_group"] == "c"
    # the people-bootstrap is wider than a binomial interval that treats the pairs as independent
    rates = pd.Series(d).groupby(sens["g"].to_numpy()).agg(["mean", "size"])
    binomial_half = 1.96 * np.sqrt((rates["mean"] * (1 - rates["mean"]) / rates["size"]).sum())
    assert r.loc["g", "dp_difference_ci_high"] - r.loc["g", "dp_difference"] > binomial_half


def test_population_features_are_the_features_stages_own(small_fairness_run):
    "The candidate pairs' features come from the features stage's pair function: for the test split's own pairs they equal the stored features."
    from thinkalike_ml.fairness import fairness_inputs, population_inputs
    run, params, m, _ = small_fairness_run
    inputs = fairness_inputs(run)
    pf = inputs["features"]["pair_features"]
    test = pf[pf["split"] == "test"].head(200).reset_index(drop=True)
    from thinkalike_ml import fairness
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fairness, "population_pairs", lambda people, n, seed=0: test[["user_a", "user_b"]])
        pop = population_inputs(inputs, ["region"], params | {"fairness_population_pairs": 200})
    np.testing.assert_allclose(pop["X"].to_numpy(), test[inputs["features"]["pair_columns"]].to_numpy(float), atol=1e-12)
    assert population_inputs(inputs, ["region"], params | {"fairness_population_pairs": 0}) is None


def test_list_hits_agree_with_the_models_stages_ranking_metrics():
    from thinkalike_ml.models import ranking_metrics_from_lists
    rng = np.random.default_rng(0)
    users, items = [f"u{i}" for i in range(40)], [f"i{j}" for j in range(25)]
    lists = pd.DataFrame([(u, "m", r + 1, it, 0.0) for u in users for r, it in enumerate(rng.choice(items, 10, replace=False))],
                         columns=["user_id", "model", "rank", "item_id", "score"])
    rel = pd.DataFrame([(u, it) for u in users[:35] for it in rng.choice(items, rng.integers(1, 6), replace=False)],
                       columns=["user_id", "item_id"])
    h = list_hits(lists, rel, 5)
    ref = ranking_metrics_from_lists(lists, rel, 5).iloc[0]
    assert h["ndcg"].mean() == pytest.approx(ref["ndcg@5"], abs=1e-12)
    assert h["hit_rate"].mean() == pytest.approx(ref["hit_rate@5"], abs=1e-12)


@pytest.fixture(scope="module")
def small_fairness_run():
    """The fairness stage on the small profile's cached upstream, run on its own copy; no model of the models stage is refitted."""
    from thinkalike_ml import models
    from thinkalike_ml.stages import execute_stage, open_stage
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, params = open_stage(None, "fairness")
    before = {k: v for k, v in run.checksums().items() if not k.startswith("artifacts/fairness/")}  # upstream only: the cached run may hold this stage's own outputs
    def refuse(*a, **k): raise AssertionError("the fairness stage fitted a recommender")
    def subclasses(c): return [c] + [s for d in c.__subclasses__() for s in subclasses(d)]
    with pytest.MonkeyPatch.context() as no_fit:
        for cls in subclasses(models.Recommender):
            if "fit" in vars(cls): no_fit.setattr(cls, "fit", refuse)
        metrics = execute_stage(run, "fairness", params)
    yield run, params, metrics, before
    mp.undo()


def test_fairness_stage_reports_every_side_attribute_and_intersection(small_fairness_run):
    run, params, m, before = small_fairness_run
    f = load_fairness(run)
    assert set(FAIRNESS_TABLES) - {"mitigated_predictions", "mitigated_summary"} <= set(f)
    s = f["matcher_summary"]
    assert set(s["side"]) == set(PAIR_SIDES)
    sug = set(s.loc[s.side == "suggested", "attribute"])
    assert set(params["sensitive_attributes"]) < sug and any(" × " in a for a in sug)  # one intersection
    assert (s.dropna(subset=["ci_low", "ci_high"]).eval("ci_low <= ci_high")).all()
    assert set(f["traffic_light"]["status"]) <= {"green", "amber", "red", "n/a"}
    assert 0 < f["summary"]["threshold"] < 1 and f["summary"]["unavailable_attributes"] == []
    assert m["matcher_dp_difference"] == pytest.approx(s[(s.side == "suggested") & (s.metric == "dp_difference")
                                                         & ~s.attribute.str.contains(" × ")]["value"].max())
    assert list(f["mitigation"]["model"]) == ["unmitigated", *params["fairness_mitigations"]]
    mt = f["mitigation"]
    for c in ("auc", "calibration_gap"):
        assert (mt[f"{c}_ci_low"] <= mt[c] + 1e-12).all() and (mt[c] <= mt[f"{c}_ci_high"] + 1e-12).all()
    e = f["exposure"]
    assert (e["exposure_share_ci_low"] <= e["exposure_share"] + 1e-12).all() and (e["exposure_share"] <= e["exposure_share_ci_high"] + 1e-12).all()
    assert {"North", "South"} <= set(f["exposure"]["group"]) and f["exposure"]["exposure_share"].sum() == pytest.approx(1)
    assert set(f["ranking_groups"]["attribute"]) == set(params["sensitive_attributes"])
    assert {k: v for k, v in run.checksums().items() if k in before} == before  # upstream artifacts untouched
    assert run.metrics()["fairness"] == m


def test_fairness_is_logged_to_the_runs_mlflow_run(small_fairness_run):
    import json

    import mlflow
    run, params, m, _ = small_fairness_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    r = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"])
    assert r.data.metrics["fairness_matcher_dp_difference"] == pytest.approx(m["matcher_dp_difference"])
    assert r.data.tags["fairness.threshold"] == str(params["fairness_threshold"])
    assert r.data.tags["thinkalike.stage.fairness"] == "tracked"


def test_an_attribute_the_data_lack_is_reported_unavailable_not_a_crash(small_fairness_run, tmp_path):
    import shutil

    from thinkalike_ml.fairness import run_fairness_stage
    from thinkalike_ml.runs import RunDirectory
    run, params, _, _ = small_fairness_run
    copy = RunDirectory(shutil.copytree(run.path, tmp_path / "run"))
    m = run_fairness_stage(copy, params | {"sensitive_attributes": ["region", "religion"]})
    info = load_fairness(copy)["summary"]
    assert info["unavailable_attributes"] == ["religion"] and info["attributes"] == ["region"]
    assert np.isfinite(m["matcher_dp_difference"])


def test_a_source_without_suggestions_skips_the_matcher_with_a_note(small_fairness_run, tmp_path, monkeypatch):
    import shutil

    from thinkalike_ml import fairness
    from thinkalike_ml.runs import RunDirectory
    run, params, _, _ = small_fairness_run
    copy = RunDirectory(shutil.copytree(run.path, tmp_path / "run"))
    real = fairness.fairness_inputs
    def without_matcher(r):
        inputs = real(r)
        inputs["predictions"]["matcher"] = inputs["predictions"]["matcher"].iloc[:0]
        return inputs | {"matcher": None}
    monkeypatch.setattr(fairness, "fairness_inputs", without_matcher)
    m = fairness.run_fairness_stage(copy, params)
    assert m["matcher_skipped"] == 1.0 and "matcher_dp_difference" not in m and np.isfinite(m["recommender_ndcg"])
    assert load_fairness(copy)["summary"]["matcher_skipped"] is True


def test_a_source_without_demographics_reports_them_unavailable(small_fairness_run, tmp_path, monkeypatch):
    """MovieTweetings-like: no suggestions, users without gender, age band or region, items without creator groups."""
    import shutil

    from thinkalike_ml import fairness
    from thinkalike_ml.runs import RunDirectory
    run, params, _, _ = small_fairness_run
    copy = RunDirectory(shutil.copytree(run.path, tmp_path / "run"))
    real = fairness.fairness_inputs
    def bare(r):
        inputs = real(r)
        inputs["predictions"]["matcher"] = inputs["predictions"]["matcher"].iloc[:0]
        data = inputs["data"] | {"users": inputs["data"]["users"][["user_id"]], "items": inputs["data"]["items"][["item_id"]]}
        return inputs | {"matcher": None, "data": data, "truth": None}
    monkeypatch.setattr(fairness, "fairness_inputs", bare)
    m = fairness.run_fairness_stage(copy, params)
    info = load_fairness(copy)["summary"]
    assert info["unavailable_attributes"] == params["sensitive_attributes"] and info["attributes"] == []
    assert m["matcher_skipped"] == 1.0 and "recommender_ndcg_group_gap" not in m and np.isfinite(m["recommender_ndcg"])


def test_the_fairness_gate_fails_at_most_5_percent_at_the_threshold_and_can_pass_and_fail():
    "The gate's verdict has a known error rate: at a true difference equal to the threshold it says 'fail' in at most 5% of"
    " simulated splits; a large true difference fails, and no difference on many rows passes."
    import numpy as np
    import pandas as pd
    from thinkalike_ml.fairness import fairness_gate_verdict
    rng = np.random.default_rng(0)
    def verdicts(delta, n, sims):
        out = []
        for _ in range(sims):
            g = rng.choice(["a", "b", "c"], n)
            y = (rng.random(n) < .3).astype(int)
            d = (rng.random(n) < np.where(g == "a", .4 - delta, .4)).astype(int)
            out.append(fairness_gate_verdict(y, d, pd.DataFrame({"g": g}), 0.05)["verdict"])
        return pd.Series(out)
    at = verdicts(0.05, 3000, 300)
    assert (at == "fail").mean() <= 0.05 + 2 * np.sqrt(.05 * .95 / 300), (at == "fail").mean()
    assert (verdicts(0.25, 3000, 20) == "fail").all()
    assert (verdicts(0.0, 300_000, 3) == "pass").all()
    r = fairness_gate_verdict([0, 1] * 20, [0, 1] * 20, pd.DataFrame({"g": ["x"] * 30 + ["y"] * 10}), 0.05, min_group_size=30)
    assert r["verdict"] is None and r["small_groups"] == ["g=y"]  # a small group is reported, not gated


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the default profile's data, splits, features, models, evaluation and fairness stages
def test_on_the_default_run_the_recommended_matcher_is_within_the_threshold_on_the_population(tmp_path, monkeypatch):
    "Done-when of the fairness issue: the recommended model's population DP difference, upper end of its 95% interval, is within `fairness_threshold`."
    from thinkalike_ml.pipeline import run_pipeline
    from helpers import temporary_registry
    with temporary_registry(tmp_path):
        run = run_pipeline(until="fairness", reports_dir=tmp_path / "reports", progress=False)
    f = load_fairness(run)
    rec, mt = f["summary"]["recommended_mitigation"], f["mitigation"].set_index("model")
    assert rec["metric"] == "population_dp_ci_high" and rec["population"]["pairs"] == run.params["fairness_population_pairs"] > 0
    chosen = mt.loc["unmitigated" if rec["mitigation"] == "none" else rec["mitigation"]]
    assert chosen["population_dp_difference"] <= chosen["population_dp_ci_high"] <= run.params["fairness_threshold"]
    assert rec["population_dp_ci_high"] == pytest.approx(chosen["population_dp_ci_high"]) and np.isfinite(rec["accuracy_change"])
    pp = f["population_parity"]
    assert set(pp["model"]) == set(mt.index) and {"gender", "age_band", "region", "(largest)"} <= set(pp["attribute"])
