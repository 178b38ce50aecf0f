"""The interpretability stage: SHAP local accuracy for both explainers, the truth checks on a toy whose drivers are known,
the deletion test, null features ranked with intervals, the local surrogate's fidelity, counterfactuals on actionable
fields only, "why this match" never leaking a sensitive attribute or a private value, and a small end-to-end run on the
cached small profile that reads the stored matcher only (no refit), with and without suggestions and ground truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from thinkalike_ml.interpretability import (INTERPRETABILITY_TABLES, SENSITIVE_COLUMNS, actionable_columns, base_model,
                                            bootstrap_importance, counterfactual_search, deletion_test, driver_agreement, hgb_tree_shap,
                                            load_interpretability, local_accuracy_error, local_surrogates,
                                            map_features_to_drivers, null_below_drivers_share, null_clearly_below_share, null_partial_correlation,
                                            null_rank_share, null_vs_drivers,
                                            profile_scorer, shap_values, true_effects, why_this_match)


def _toy(n=3000, seed=0):
    """Features f1..f3 driven by true terms u (strong), v (weaker), plus two null features; labels from the true logit."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=n), rng.normal(size=n)
    X = pd.DataFrame({"f1": u + .3 * rng.normal(size=n), "f2": u + .3 * rng.normal(size=n), "f3": v + .3 * rng.normal(size=n),
                      "null1": rng.normal(size=n), "null2": rng.uniform(size=n)})
    truth = pd.DataFrame({"u": u, "v": v, "logit": 2.0 * u - 0.7 * v})
    y = (rng.random(n) < 1 / (1 + np.exp(-truth["logit"]))).astype(int)
    return X, y, truth


@pytest.mark.parametrize("kind", ["linear", "tree"])
def test_shap_values_of_the_calibrated_matchers_base_sum_to_its_log_odds(kind):
    X, y, _ = _toy()
    base = (make_pipeline(StandardScaler(), LogisticRegression()) if kind == "linear"
            else HistGradientBoostingClassifier(max_iter=50, random_state=0)).fit(X, y)
    cal = CalibratedClassifierCV(FrozenEstimator(base)).fit(X[:500], y[:500])
    assert base_model(cal) is base
    vals, ev, k = shap_values(base_model(cal), X[:300], X[1000:1200])
    assert k == kind and vals.shape == (300, 5)
    assert local_accuracy_error(base, X[:300], vals, ev) < 1e-6


def _shap_tree(model, X):
    import shap
    ex = shap.TreeExplainer(model)
    return np.asarray(ex.shap_values(np.asarray(X, float)), float), float(np.ravel(ex.expected_value)[-1])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_hgb_tree_shap_equals_shaps_exact_values_and_sums_to_the_raw_output(kind):
    """The vectorised path-dependent TreeSHAP gives shap's TreeExplainer values (to rounding) on deep trees that split on a
    feature several times along a path, with missing values sent both ways, and its values sum to the raw output."""
    from thinkalike_ml.interpretability import _distinct_path_features
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(1500, 4)), columns=["a", "b", "c", "d"])
    z = np.sin(2 * X["a"]) + X["b"] * X["c"] + .5 * X["d"] ** 2
    X.loc[rng.random(len(X)) < .15, "b"] = np.nan  # missing in training: each split learns where NaN goes
    X.loc[rng.random(len(X)) < .05, "d"] = np.nan
    if kind == "classifier":
        model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=40, min_samples_leaf=5, random_state=0)
        model.fit(X, (rng.random(len(X)) < 1 / (1 + np.exp(-2 * z.fillna(0)))).astype(int))
        raw = model.decision_function
    else:
        model = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=40, min_samples_leaf=5, random_state=0).fit(X, z.fillna(0))
        raw = model.predict
    nodes = [p[0].nodes for p in model._predictors]
    assert max(int(n["depth"].max()) for n in nodes) > max(_distinct_path_features(n) for n in nodes)  # repeated features on a path
    nan_left = np.concatenate([n["missing_go_to_left"][~n["is_leaf"].astype(bool)] for n in nodes])
    assert nan_left.any() and not nan_left.all()  # both directions for missing values occur
    Xe = X.sample(400, random_state=1)
    ours, ev = hgb_tree_shap(model, Xe)
    theirs, ev_shap = _shap_tree(model, Xe)
    assert np.abs(ours - theirs).max() < 1e-9 and abs(ev - ev_shap) < 1e-9
    assert np.abs(ev + ours.sum(1) - raw(Xe)).max() < 1e-9
    assert np.array_equal(hgb_tree_shap(model, Xe[["d", "c", "b", "a"]])[0], ours)  # columns matched by name
    assert np.abs(hgb_tree_shap(model, Xe.to_numpy(), n_jobs=2)[0] - ours).max() < 1e-12


def test_hgb_tree_shap_refuses_what_it_cannot_explain_with_a_clear_error():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    multi = HistGradientBoostingClassifier(max_iter=5).fit(X, rng.integers(0, 3, 300))
    with pytest.raises(ValueError, match="multiclass"):
        hgb_tree_shap(multi, X)
    Xc = X.assign(b=pd.Categorical(rng.choice(["x", "y", "z"], 300)))
    cat = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype").fit(Xc, (Xc["b"] == "x").astype(int))
    with pytest.raises(ValueError, match="categorical"):
        hgb_tree_shap(cat, Xc)
    fitted = HistGradientBoostingClassifier(max_iter=5).fit(X, (X["a"] > 0).astype(int))
    with pytest.raises(ValueError, match=r"lacks the model's column\(s\) \['b'\]"):
        hgb_tree_shap(fitted, X[["a"]])
    with pytest.raises(ValueError, match="not a fitted HistGradientBoosting"):
        hgb_tree_shap(HistGradientBoostingClassifier(), X)


def test_base_model_refuses_a_cross_validated_calibration():
    X, y, _ = _toy(600)
    with pytest.raises(ValueError, match="3 fold models"):
        base_model(CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y))


def test_truth_checks_find_the_drivers_and_put_null_features_last():
    X, y, truth = _toy()
    base = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    vals, _, _ = shap_values(base, X[:500], X[500:700])
    imp = pd.Series(np.abs(vals).mean(0), index=X.columns)
    drivers = map_features_to_drivers(X[:500], truth[:500], ["u", "v"])
    assert drivers[["f1", "f2", "f3"]].tolist() == ["u", "u", "v"] and drivers[["null1", "null2"]].isna().all()
    effects = true_effects(truth[:500], ["u", "v"])
    assert effects["u"] > effects["v"]
    table, rho = driver_agreement(imp, drivers, effects)
    assert rho == pytest.approx(1.0) and table["driver"].tolist() == ["u", "v"]
    assert null_rank_share(imp, drivers) == 1.0


def test_deleting_the_most_important_features_hurts_more_than_random_ones():
    X, y, _ = _toy()
    m = LogisticRegression().fit(X, y)
    d = deletion_test(lambda Z: m.predict_proba(Z)[:, 1], X, y, pd.Series(np.abs(m.coef_[0]) * X.std().to_numpy(), index=X.columns),
                      X.mean(), n_random=5)
    assert d["top"].mean() < d["random"].mean() and d["top"].iloc[0] == d["random"].iloc[0]
    assert d["top"].iloc[-1] == pytest.approx(.5)  # everything replaced: no information left


def test_the_null_feature_check_flags_a_null_feature_the_model_really_uses():
    """The check is defined on mean |SHAP| with bootstrap intervals: a 'null' feature (uncorrelated with the true terms)
    that the labels in fact depend on ranks above a driver, and the check reports it instead of hiding it."""
    X, _, truth = _toy(4000)
    rng = np.random.default_rng(1)
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-(truth["logit"] + 3 * X["null1"])))).astype(int)  # null1 really matters
    m = LogisticRegression().fit(X, y)
    vals, _, _ = shap_values(m, X[:600], X[600:800])
    imp = pd.Series(np.abs(vals).mean(0), index=X.columns)
    lo, hi = (pd.Series(v, index=X.columns) for v in bootstrap_importance(vals, seed=0))
    assert (lo <= imp).all() and (imp <= hi).all()
    drivers = map_features_to_drivers(X[:600], truth[:600], ["u", "v"])
    assert pd.isna(drivers["null1"]) and imp["null1"] > imp["f3"]
    assert null_rank_share(imp, drivers) < 1 and null_clearly_below_share(lo, hi, drivers) < null_rank_share(imp, drivers) + 1e-12
    clean = LogisticRegression().fit(X, (rng.random(len(X)) < 1 / (1 + np.exp(-truth["logit"]))).astype(int))
    v2, _, _ = shap_values(clean, X[:600], X[600:800])
    l2, h2 = (pd.Series(v, index=X.columns) for v in bootstrap_importance(v2, seed=0))
    assert null_clearly_below_share(l2, h2, drivers) == 1.0


def test_a_null_feature_that_is_a_suppressor_is_used_by_the_matcher_and_the_partial_correlation_says_why():
    """z is uncorrelated with the truth on its own (so the screen calls it null), but given the driver feature x1 = e + z/2
    it removes x1's error: the matcher uses it (it ranks above a pure-noise feature) and its partial correlation with the
    true logit is far from 0, while the noise feature's is near 0."""
    rng = np.random.default_rng(2)
    e, z, w = rng.normal(size=(3, 4000))
    truth = pd.DataFrame({"u": e, "logit": 2 * e})
    X = pd.DataFrame({"x1": e + .5 * z, "z": z, "w": w})
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-truth["logit"]))).astype(int)
    drivers = map_features_to_drivers(X, truth, ["u"], alpha=None)  # the marginal screen alone
    assert drivers["x1"] == "u" and drivers[["z", "w"]].isna().all()
    m = LogisticRegression().fit(X, y)
    imp = pd.Series(np.abs(shap_values(m, X[:800], X[800:1000])[0]).mean(0), index=X.columns)
    assert imp["z"] > 5 * imp["w"]
    part = null_partial_correlation(X, truth, drivers)
    assert set(part.index) == {"z", "w"} and part["z"] < -.5 and abs(part["w"]) < .05
    full = map_features_to_drivers(X, truth, ["u"])  # the conditional step: z adds truth given x1, so it is a driver feature; w is not
    assert full["z"] == "u" and pd.isna(full["w"])


@pytest.mark.parametrize("kind", ["logreg", "hgb"])
def test_a_pure_noise_column_ranks_below_every_true_driver_and_a_null_feature_the_model_uses_does_not(kind):
    """The null-feature check of the stage (`null_vs_drivers`: each null feature's mean |SHAP| against each true driver's mean
    |summed SHAP|) on held-out rows, for both candidate kinds: an added pure-noise column and the toy's null features rank
    last; trained on labels that really depend on a column the truth does not contain (a model using a 'null' feature), the
    same check fails."""
    X, _, truth = _toy(6000, seed=3)
    rng = np.random.default_rng(4)
    X["noise"] = rng.normal(size=len(X))
    fit = lambda y: (make_pipeline(StandardScaler(), LogisticRegression()) if kind == "logreg"
                     else HistGradientBoostingClassifier(max_iter=60, random_state=0)).fit(X[:4000], y[:4000])
    hold, bg = X[4000:5000].reset_index(drop=True), X[5000:5200]
    drivers = map_features_to_drivers(hold, truth[4000:5000].reset_index(drop=True), ["u", "v"])
    assert drivers[["f1", "f2", "f3"]].tolist() == ["u", "u", "v"] and drivers[["null1", "null2", "noise"]].isna().all()
    clean = fit((rng.random(len(X)) < 1 / (1 + np.exp(-truth["logit"]))).astype(int))
    t = null_vs_drivers(shap_values(clean, hold, bg)[0], hold.columns, drivers)
    assert t["kind"].tolist() == ["driver"] * 2 + ["null"] * 3 and "noise" in t["name"].tolist()
    assert null_below_drivers_share(t) == 1.0 and null_below_drivers_share(t, clearly=True) == 1.0
    used = fit((rng.random(len(X)) < 1 / (1 + np.exp(-(truth["logit"] + 1.5 * X["noise"])))).astype(int))  # 'noise' drives the labels
    t2 = null_vs_drivers(shap_values(used, hold, bg)[0], hold.columns, drivers)
    assert t2.loc[t2["kind"] == "null", "name"].iloc[0] == "noise" and null_below_drivers_share(t2) < 1.0


def test_the_local_surrogate_is_faithful_on_a_linear_model_and_says_so_when_it_is_not():
    X, y, _ = _toy(2000)
    lin = LogisticRegression().fit(X, y)
    sd = X.std()
    out = local_surrogates(lin.decision_function, X[:5], sd, X.min(), X.max(), seed=0)
    for s in out:
        assert s["fidelity"] > .99
        assert np.allclose(s["coef"].to_numpy(), lin.coef_[0] * sd.to_numpy(), rtol=.05, atol=.02)
    hgb = HistGradientBoostingClassifier(max_iter=200, max_depth=None, learning_rate=.3, random_state=0).fit(X, (X["f1"] * X["f3"] > 0).astype(int))
    fid = [s["fidelity"] for s in local_surrogates(hgb.decision_function, X[:20], sd, seed=0)]
    assert np.median(fid) < .9  # an interaction (XOR-like) is not linear around most pairs
    for s in local_surrogates(lin.decision_function, X[:3], sd.where(sd.index != "f1", 0.0), seed=0):
        assert s["coef"]["f1"] == 0  # a feature with perturbation scale 0 is held fixed and gets no slope


def _profiles(rng, cats, tags):
    def person():
        p = {"interests": ";".join(rng.choice(tags, rng.integers(0, 5), replace=False)), "age": int(rng.integers(18, 80)),
             "age_band": rng.choice(["18-24", "25-34", "65+"]), "gender": rng.choice(["female", "male", "non-binary"]),
             "region": rng.choice(["North", "South", "Central"]), "ethnicity": rng.choice(["Group-Alpha", "Group-Beta"])}
        for c in cats:
            p[f"value_importance_{c}"], p[f"value_position_{c}"] = float(rng.uniform()), float(rng.uniform(-1, 1))
        return p
    return person(), person()


def test_why_this_match_uses_only_shared_visible_facts_and_never_a_sensitive_or_private_value():
    from thinkalike_ml.features import interest_sets
    rng = np.random.default_rng(0)
    cats, tags = ["Privacy", "Ethical_AI", "Community"], ["hiking", "chess", "poetry", "music", "cooking", "film"]
    feats = ["value_cosine", "value_weighted_agreement", "interest_jaccard", "shared_interests", "signup_days_apart",
             *[f"agree_{c}" for c in cats], *[f"care_{c}" for c in cats]]
    n_reasons = 0
    for _ in range(300):
        a, b = _profiles(rng, cats, tags)
        reasons = why_this_match(pd.Series(rng.normal(size=len(feats)), index=feats), a, b)
        text = " ".join(reasons)
        n_reasons += len(reasons)
        assert len(reasons) <= 3 and not any(ch.isdigit() for ch in text)  # no numbers: no private importance or position
        for person in (a, b):
            for col in SENSITIVE_COLUMNS:
                assert str(person[col]) not in text
        shared = interest_sets([a["interests"]])[0] & interest_sets([b["interests"]])[0]
        for t in tags:
            if t in text: assert t in shared  # an interest only one of them lists is never revealed
        for c in cats:
            if c.replace("_", " ") in text:
                assert a[f"value_importance_{c}"] > .5 and b[f"value_importance_{c}"] > .5
                assert np.sign(a[f"value_position_{c}"]) == np.sign(b[f"value_position_{c}"])
    assert n_reasons > 100  # the property was exercised


@pytest.fixture(scope="module")
def small_interpretability_run():
    """The stage on the small profile's cached upstream; the stored matcher is never refitted."""
    from thinkalike_ml.stages import execute_stage, open_stage
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, params = open_stage(None, "interpretability")
    before = dict(run.checksums())
    def refuse(*a, **k): raise AssertionError("the interpretability stage refitted a matcher")
    with pytest.MonkeyPatch.context() as no_fit:
        for cls in (LogisticRegression, HistGradientBoostingClassifier, CalibratedClassifierCV):
            no_fit.setattr(cls, "fit", refuse)
        metrics = execute_stage(run, "interpretability", params)
    yield run, params, metrics, before
    mp.undo()


def test_the_stage_agrees_with_the_true_drivers_and_is_faithful(small_interpretability_run):
    run, params, m, before = small_interpretability_run
    out = load_interpretability(run)
    assert {"importance", "concepts", "drivers", "deletion", "reasons", "shap"} <= set(out) <= set(INTERPRETABILITY_TABLES) | {"summary"}
    assert m["driver_spearman"] >= 0.8
    # null features below every true driver for the selected matcher (on this small profile the HGB candidate, not selected, has one
    # of its 39 (null feature, driver) pairs out of order: reported per candidate, checked in the next test; default run: all at 1.0)
    assert m["null_features_rank_last_share"] == 1.0, load_interpretability(run)["nulls"].to_string()
    assert m["shap_local_accuracy_max_error"] < 1e-6
    assert m["deletion_auc_top"] < m["deletion_auc_random"]
    assert 0 <= m["surrogate_agreement"] <= 1 and "|---" in out["summary"]["rules"]
    assert len(out["shap"]) == min(params["n_explain"], len(out["shap"])) and out["summary"]["units"].startswith("log-odds")
    imp = out["importance"]
    assert (imp["permutation_low"] <= imp["permutation_high"]).all() and imp["concept"].notna().all()
    assert {k: v for k, v in run.checksums().items() if k in before} == before  # upstream artifacts untouched
    assert run.metrics()["interpretability"] == m


def test_the_example_reasons_name_no_sensitive_attribute_of_either_person(small_interpretability_run):
    from thinkalike_ml.data import load_dataset
    run, _, _, _ = small_interpretability_run
    users = load_dataset(run)["users"].set_index("user_id")
    reasons = load_interpretability(run)["reasons"].merge(load_dataset(run)["suggestions"][["suggestion_id", "user_a", "user_b"]])
    assert (reasons["reasons"].str.len() > 0).all()
    for r in reasons.itertuples():
        assert not any(ch.isdigit() for ch in r.reasons)
        for u in (r.user_a, r.user_b):
            for col in ("gender", "region", "age_band"):
                assert str(users.loc[u, col]) not in r.reasons


def test_every_candidate_is_explained_and_the_local_surrogates_are_measured(small_interpretability_run):
    from thinkalike_ml.models import load_models
    run, params, m, _ = small_interpretability_run
    out = load_interpretability(run)
    names = list(load_models(run)["matcher"]["candidates"])
    assert len(names) >= 2 and {f"shap_{k}" for k in names} | {f"rank_{k}" for k in names} <= set(out["candidates"])
    assert set(out["candidates"]["feature"]) == set(out["importance"]["feature"])
    assert m["candidates_shap_local_accuracy_max_error"] < 1e-6
    assert set(out["local"]["model"]) == set(names) and (out["local"]["selected"].sum() == m["n_local_surrogates"] == min(params["n_local"], m["n_explained"]))
    assert -1 <= m["local_surrogate_fidelity_min"] <= m["local_surrogate_fidelity_median"] <= 1
    imp = out["importance"]
    assert (imp["mean_abs_shap_low"] <= imp["mean_abs_shap"]).all() and (imp["mean_abs_shap"] <= imp["mean_abs_shap_high"]).all()
    assert 0 <= m["null_features_clearly_below_share"] <= m["null_features_rank_last_share"] <= 1  # reported, whatever the finding
    assert 0 <= m["null_features_clearly_below_driver_features_share"] <= m["null_features_below_driver_features_share"] <= 1
    nv = out["nulls"]
    assert set(nv.loc[nv["kind"] == "null", "name"]) == set(imp.loc[imp["driver"].isna(), "feature"])
    assert set(nv.loc[nv["kind"] == "driver", "name"]) == set(imp["driver"].dropna())
    for k in names: assert 0 <= m[f"null_features_clearly_below_share_{k}"] <= m[f"null_features_rank_last_share_{k}"] <= 1
    nulls = imp[imp["driver"].isna()]
    assert len(nulls) == m["n_null_features"] and nulls["null_partial_corr"].between(-1, 1).all()
    assert imp.loc[imp["driver"].notna(), "null_partial_corr"].isna().all()
    assert m["null_features_max_abs_partial_corr"] == pytest.approx(nulls["null_partial_corr"].abs().max())


def test_counterfactuals_are_valid_and_change_only_actionable_fields(small_interpretability_run):
    run, params, m, _ = small_interpretability_run
    out = load_interpretability(run)
    cf, info = out["counterfactuals"], out["summary"]["counterfactuals"]
    assert len(cf) == m["n_counterfactual_pairs"] > 0 and (cf["p_before"] < info["threshold"]).all()
    assert m["counterfactual_validity"] >= 0.9
    assert info["non_actionable_fields_changed"] == [] and info["feature_reproduction_error"] < 1e-9
    v = cf[cf["valid"]]
    assert (v["p_after"] >= info["threshold"]).all() and (v["sparsity"] >= 1).all() and (v["sparsity"] <= info["max_changes"]).all()
    for text in cf["changes"]:
        for col in ("age", "gender", "region", "ethnicity", "signup_time", "value_position_"):
            assert col not in text


def test_the_counterfactual_search_never_touches_a_sensitive_or_immutable_field():
    """On the matcher's real scorer shape: profiles with sensitive columns; only value_importance_* and interests may change,
    and a changed profile really scores above the threshold when its features are rebuilt from scratch."""
    rng = np.random.default_rng(0)
    cats, tags = ["Privacy", "Community"], ["hiking", "chess", "poetry", "music"]
    users = pd.DataFrame([{"user_id": f"u{i}", **_profiles(rng, cats, tags)[0]} for i in range(200)])
    from thinkalike_ml.features import pair_features
    pairs = pd.DataFrame({"user_a": users["user_id"][:100].to_numpy(), "user_b": users["user_id"][100:].to_numpy()})
    F = pair_features(users, pairs)
    y = (F["interest_jaccard"] + F["value_weighted_agreement"] + .1 * rng.normal(size=len(F)) > .3).astype(int)
    model = LogisticRegression().fit(F, y)
    score = profile_scorer(model, list(F.columns), F)
    p = model.predict_proba(F)[:, 1]
    low = np.flatnonzero(p < .5)[:20]
    A = [users.iloc[i].to_dict() for i in low]; B = [users.iloc[100 + i].to_dict() for i in low]
    params = {"sensitive_attributes": ["gender", "region"]}
    cols = actionable_columns(users, params)
    assert cols == [f"value_importance_{c}" for c in cats]
    cf, changed = counterfactual_search(lambda a, b, pos: score(a, b, [low[j] for j in pos]), A, B, .5, cols)
    assert cf["found"].mean() >= .5  # some toy pairs cannot flip: the partner lists no interest and disagrees on every value
    fresh = score(changed, B, list(low))
    assert (fresh[cf["found"].to_numpy()] >= .5).all()
    for a, c in zip(A, changed):
        for k in a:
            if k not in cols and k != "interests":
                assert a[k] == c[k], k


def test_the_stage_is_logged_to_the_runs_mlflow_run(small_interpretability_run):
    import json

    import mlflow
    run, _, m, _ = small_interpretability_run
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    r = mlflow.MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"])
    assert r.data.metrics["interpretability_driver_spearman"] == pytest.approx(m["driver_spearman"])


def test_the_reports_figures_are_logged_to_mlflow(small_interpretability_run):
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from thinkalike_ml.interpretability import track_interpretability_figures
    run, params, _, _ = small_interpretability_run
    fig, ax = plt.subplots(); ax.plot([0, 1], [1, 0])
    run.save_figure("interpretability_probe", fig); plt.close(fig)
    assert "interpretability_probe.png" in track_interpretability_figures(run, params)
    rec = json.loads((run.path / "artifacts/tracking.json").read_text())
    logged = [f.path for f in mlflow.MlflowClient(rec["tracking_uri"]).list_artifacts(rec["run_id"], "figures")]
    assert "figures/interpretability_probe.png" in logged


def _copy(run, tmp_path):
    """A copy of the run without this stage's outputs, as the stage finds a fresh run."""
    import shutil

    from thinkalike_ml.runs import RunDirectory
    copy = RunDirectory(shutil.copytree(run.path, tmp_path / "run"))
    for p in INTERPRETABILITY_TABLES.values():
        copy.file(p).unlink(missing_ok=True)
    return copy


def test_without_suggestions_the_stage_is_skipped_with_a_note(small_interpretability_run, tmp_path, monkeypatch):
    from thinkalike_ml import interpretability
    run, params, _, _ = small_interpretability_run
    copy = _copy(run, tmp_path)
    real = interpretability.interpretability_inputs
    monkeypatch.setattr(interpretability, "interpretability_inputs", lambda r: real(r) | {"matcher": None})
    m = interpretability.run_interpretability_stage(copy, params)
    assert m["matcher_skipped"] == 1.0 and np.isnan(m["driver_spearman"])
    assert load_interpretability(copy)["summary"]["matcher_skipped"] is True


def test_without_ground_truth_the_truth_checks_are_not_available(small_interpretability_run, tmp_path, monkeypatch):
    from thinkalike_ml import interpretability
    run, params, _, _ = small_interpretability_run
    copy = _copy(run, tmp_path)
    real = interpretability.interpretability_inputs
    monkeypatch.setattr(interpretability, "interpretability_inputs", lambda r: real(r) | {"truth": None})
    m = interpretability.run_interpretability_stage(copy, params)
    out = load_interpretability(copy)
    assert np.isnan(m["driver_spearman"]) and out["summary"]["ground_truth"] is False and "drivers" not in out
    assert m["shap_local_accuracy_max_error"] < 1e-6 and m["deletion_auc_top"] < m["deletion_auc_random"]


def test_importing_the_module_does_not_import_scipy_stats_sklearn_metrics_or_shap():
    """The API server imports this module; scipy.stats (about 1.5 s), sklearn.metrics and shap are imported inside the functions
    that need them."""
    import subprocess
    import sys
    code = ("import sys, thinkalike_ml.interpretability; "
            "print(sorted(m for m in ('scipy.stats', 'sklearn.metrics', 'shap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
