"""Benchmark and calibrate the evaluation stage. Prints its figures; asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_evaluation.py [--simulations 2000] [--pairs 1000000] [--resamples 1000] [--no-stage] [--only-pairs]

1. **A/B calibration** (issue 9, item 5): A/A and A/B experiments (true lift = the design's MDE) at the design's size,
   acceptance drawn from the generator's true probabilities of a default-profile synthetic dataset; the false-positive
   rate of each decision rule (fixed horizon, naive peeking, Pocock's guard) and the power, with Monte Carlo errors.
2. **Bootstrap at scale**: every matcher metric of one model on 1M scored pairs with 1,000 resamples, (a) rows resampled
   one by one (timed on a few resamples and extrapolated) and (b) probabilities rounded to 0.001 (a tenth of the whole
   percentage shown to users) so that the rows fall into few distinct cells, resampled exactly by a multinomial draw.
3. **The stage's matcher path on 1M scored pairs** (--pairs): a stored-predictions table in the models stage's format
   (prior, value similarity, logistic regression and boosted trees raw + calibrated, oracle; 1M test and 200k validation
   pairs), read by `matcher_frames`, every metric of every model with `--resamples` paired bootstrap resamples
   (`matcher_evaluation`: above 50,000 pairs, 1,000 random groups with probabilities rounded to 0.001 inside the
   resamples), the reliability tables. The same metrics with rows resampled one by one are timed on a few resamples and
   extrapolated, for comparison.
4. **The stage's whole per-pair work on 1M scored pairs** (--pairs): what `run_evaluation_stage` does with the matcher's
   stored predictions, each step timed (wall and CPU) with the load average: `evaluate_matcher_predictions` (frames,
   every metric of every model, their CIs and the paired bootstrap comparisons, the validation-chosen thresholds,
   the reliability tables), the baseline flags, the A/B design and calibration simulations drawn from the 1M test
   outcomes (`acceptance_pool`, as on data without ground truth), the headline table, and writing the tables into a
   run directory. Excluded, and said so: the validation-strategy comparison (it refits models on the features table
   by design; its cost depends on the training set, not on the number of scored pairs), the recommender's lists and
   the rating model (other families, not scored pairs), MLflow logging.
5. **The stage on the default profile** (unless --no-stage): data, splits, features and models in a temporary folder,
   then the evaluation stage timed on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from thinkalike_ml.config import resolve_params  # noqa: E402
from thinkalike_ml.data import load_truth  # noqa: E402
from thinkalike_ml.evaluation import (ab_calibration, bootstrap, classification_metrics, distinct_rows,  # noqa: E402
                                      matcher_evaluation, matcher_frames, reliability_table, weighted_classification_metrics)
from thinkalike_ml.runs import RunDirectory  # noqa: E402
from thinkalike_ml.stages import execute_stage  # noqa: E402


def default_run(root: Path, until: str) -> tuple[RunDirectory, dict]:
    "A default-profile run (outside the project's dataset store) through the stages up to `until`."
    params = resolve_params(overrides=dict(dataset_store=""))
    run = RunDirectory.create(params, root)
    for stage in ("data", "splits", "features", "models"):
        execute_stage(run, stage, params)
        if stage == until: break
    return run, params


def ab_figures(pool: np.ndarray, params: dict, n_simulations: int) -> None:
    t = time.perf_counter()
    ab = ab_calibration(pool, params["ab_minimum_detectable_effect"], params["ab_daily_traffic"], n_simulations,
                        params["ab_looks"], seed=params["seed"])
    secs = time.perf_counter() - t
    d = ab.design
    print(f"\n## A/B calibration: {n_simulations:,} experiments per scenario, {ab.looks} looks, {secs:.1f} s")
    print(f"design: baseline {d['baseline_rate']:.4f}, MDE {d['minimum_detectable_effect']}, alpha {d['alpha']}, power {d['power']}: "
          f"{d['n_control']:,} per arm, {d['days']:.0f} days at {d['daily_traffic']:,.0f}/day; Pocock boundary {d['pocock_boundary']:.4f}")
    print(ab.calibration.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def bootstrap_figures(n_pairs: int, n_resamples: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-1.2, 1.1, n_pairs)))
    y = (rng.random(n_pairs) < p).astype(float)
    d = (p >= 0.3).astype(float)
    print(f"\n## Bootstrap of every matcher metric (9) for one model: {n_pairs:,} pairs, {n_resamples:,} resamples")
    few = 10
    t = time.perf_counter()
    bootstrap(lambda W: weighted_classification_metrics(y, p, d, W), n_pairs, few, seed)
    per = (time.perf_counter() - t) / few
    print(f"(a) rows resampled one by one: {per:.2f} s per resample, so about {per * n_resamples:.0f} s for {n_resamples:,} (extrapolated from {few})")
    t = time.perf_counter()
    pr = p.round(3)
    (cp, cy, cd), counts = distinct_rows(pr, y, d)
    s = bootstrap(lambda W: weighted_classification_metrics(cy, cp, cd, W), len(counts), n_resamples, seed, frequencies=counts)
    secs = time.perf_counter() - t
    exact, rounded = classification_metrics(y, p, 0.3), classification_metrics(y, pr, 0.3)
    print(f"(b) probabilities rounded to 0.001, {len(counts):,} distinct cells, multinomial resampling: {secs:.1f} s for {n_resamples:,} resamples "
          "(rounding included)")
    print(f"    ROC-AUC {exact['roc_auc']:.5f} exact, {rounded['roc_auc']:.5f} rounded; 95% CI [{np.percentile(s['roc_auc'], 2.5):.5f}, "
          f"{np.percentile(s['roc_auc'], 97.5):.5f}]; log loss {exact['log_loss']:.5f} exact, {rounded['log_loss']:.5f} rounded")


def stored_predictions(n_test: int, n_validation: int, seed: int = 0) -> pd.DataFrame:
    "A matcher predictions table in the models stage's format (suggestion_id, split, model, calibrated, p, accepted)."
    rng = np.random.default_rng(seed)
    n = n_test + n_validation
    logit = rng.normal(-1.2, 1.1, n)
    truth = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < truth).astype(int)
    sig = lambda z: 1 / (1 + np.exp(-z))
    raw = {"prior": np.full(n, y[n_test:].mean()), "value_similarity": np.clip((1 + np.tanh(0.4 * logit + rng.normal(0, .8, n))) / 2, 1e-6, 1 - 1e-6),
           "logreg": sig(0.8 * logit + rng.normal(0, .6, n)), "hgb": sig(0.9 * logit + rng.normal(0, .5, n)), "oracle": truth}
    cal = {"logreg": sig(1.1 * np.log(raw["logreg"] / (1 - raw["logreg"])) - 0.1), "hgb": sig(1.05 * np.log(raw["hgb"] / (1 - raw["hgb"])))}
    sid, split = np.arange(n), np.where(np.arange(n) < n_test, "test", "validation")
    parts = [pd.DataFrame({"suggestion_id": sid, "split": split, "model": m, "calibrated": False, "p": v, "accepted": y})
             for m, v in raw.items() if m != "oracle"]
    parts.append(pd.DataFrame({"suggestion_id": sid[:n_test], "split": "test", "model": "oracle", "calibrated": False, "p": truth[:n_test], "accepted": y[:n_test]}))
    parts += [pd.DataFrame({"suggestion_id": sid, "split": split, "model": m, "calibrated": True, "p": v, "accepted": y}) for m, v in cal.items()]
    return pd.concat(parts, ignore_index=True)


def matcher_path_figures(n_pairs: int, n_resamples: int) -> None:
    pred = stored_predictions(n_pairs, n_pairs // 5)
    print(f"\n## The stage's matcher path on {n_pairs:,} test pairs (+{n_pairs // 5:,} validation), 5 models, {n_resamples:,} paired resamples")
    t, cpu = time.perf_counter(), time.process_time()
    frames = matcher_frames(pred)
    t_frames = time.perf_counter() - t
    ev = matcher_evaluation(frames, "logreg", n_resamples, 0)
    t_eval = time.perf_counter() - t - t_frames
    for m in frames.prob.columns: reliability_table(frames.y, frames.prob[m])
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"matcher_frames {t_frames:.1f} s + matcher_evaluation {t_eval:.1f} s + reliability tables = {secs:.1f} s wall, {cpu:.1f} s CPU "
          f"({ev.n_units:,} resampled units, {len(ev.metrics)} metric values, {len(ev.comparisons)} paired comparisons; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    v = ev.metrics.set_index(["model", "metric"])
    for key in (("logreg", "roc_auc"), ("logreg", "log_loss"), ("hgb", "roc_auc")):
        print(f"    {key[0]} {key[1]}: {v.loc[key, 'value']:.5f} [{v.loc[key, 'ci_low']:.5f}, {v.loc[key, 'ci_high']:.5f}]")
    c = ev.comparisons.set_index(["model", "reference", "metric"]).loc[("logreg", "hgb", "roc_auc")]
    print(f"    logreg - hgb on roc_auc: {c['improvement']:+.5f} [{c['improvement_ci_low']:+.5f}, {c['improvement_ci_high']:+.5f}], p {c['p_value']:.3g}")
    models = list(frames.prob.columns)
    few = 3
    t = time.perf_counter()
    bootstrap(lambda W: {f"{m}|{k}": x for m in models for k, x in weighted_classification_metrics(frames.y, frames.prob[m], frames.y, W).items()},
              len(frames.y), few, 0)
    per = (time.perf_counter() - t) / few
    print(f"    for comparison, rows resampled one by one: {per:.1f} s per resample, about {per * n_resamples / 60:.0f} min for {n_resamples:,} "
          f"(extrapolated from {few})")


def whole_stage_figures(root: Path, n_pairs: int, n_resamples: int) -> None:
    "The stage's per-pair work on `n_pairs` stored test pairs (see item 4 of the module docstring), each step timed."
    from thinkalike_ml.evaluation import (EVALUATION_DIR, acceptance_pool, baseline_flags, evaluate_matcher_predictions,
                                          headline_table)
    params = resolve_params(overrides=dict(dataset_store=""))
    run = RunDirectory.create(params, root)
    inputs = {"predictions": {"matcher": stored_predictions(n_pairs, n_pairs // 5)}, "models": {"matcher": {"selected": "logreg"}}, "truth": None}
    steps, load0 = {}, os.getloadavg()
    def timed(name, f):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        steps[name] = (time.perf_counter() - t, time.process_time() - c)
        return out
    ev, rel = timed("matcher metrics, CIs, paired comparisons, thresholds, reliability", lambda: evaluate_matcher_predictions(inputs, n_resamples, params["seed"]))
    flags = timed("baseline flags", lambda: baseline_flags(ev.comparisons, "matcher"))
    ab = timed(f"A/B design + {params['ab_simulations']:,} simulations per scenario from the test outcomes",
               lambda: ab_calibration(acceptance_pool(inputs), params["ab_minimum_detectable_effect"], params["ab_daily_traffic"],
                                      params["ab_simulations"], params["ab_looks"], seed=params["seed"]))
    def write():
        for name, df in {"metrics": ev.metrics, "comparisons": ev.comparisons, "reliability": rel, "ab_calibration": ab.calibration,
                         "headline": headline_table(ev.metrics, ev.comparisons, ev.selected, "matcher")}.items():
            run.write_table(f"{EVALUATION_DIR}/{name}.parquet", df)
    timed("headline table + writing the tables", write)
    wall, cpu = sum(w for w, _ in steps.values()), sum(c for _, c in steps.values())
    print(f"\n## The stage's per-pair work on {n_pairs:,} test pairs (+{n_pairs // 5:,} validation), 5 models + oracle, {n_resamples:,} resamples")
    for name, (w, c) in steps.items(): print(f"    {name}: {w:.1f} s wall, {c:.1f} s CPU")
    print(f"total {wall:.1f} s wall, {cpu:.1f} s CPU; load average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores "
          f"({len(flags)} baseline flags). Excluded: the validation-strategy refits, the recommender's and the rating model's evaluation, MLflow.")


def stage_figures(root: Path) -> None:
    t = time.perf_counter()
    run, params = default_run(root, "models")
    up = time.perf_counter() - t
    t = time.perf_counter()
    m = execute_stage(run, "evaluation", params)
    secs = time.perf_counter() - t
    print(f"\n## The evaluation stage on the default profile: {secs:.1f} s (upstream data..models {up:.0f} s); "
          f"n_bootstrap {params['n_bootstrap']}, ab_simulations {params['ab_simulations']}")
    keys = ["matcher_test_roc_auc", "matcher_test_roc_auc_ci_low", "matcher_test_roc_auc_ci_high", "matcher_test_ece",
            "recommender_test_ndcg", "recommender_test_ndcg_ci_low", "recommender_test_ndcg_ci_high", "recommender_test_oracle_ndcg",
            "recommender_test_value_profile_ndcg", "recommender_seen_share", "recommender_users_only_seen_share", "ab_n_per_arm", "n_flags"]
    print(pd.Series({k: m.get(k, float("nan")) for k in keys}).to_string(float_format=lambda v: f"{v:.4f}"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--simulations", type=int, default=2000, help="A/A and A/B experiments per scenario (at least 1,000)")
    ap.add_argument("--pairs", type=int, default=1_000_000, help="scored pairs of the bootstrap benchmark")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-stage", action="store_true", help="skip the stage on the default profile")
    ap.add_argument("--only-pairs", action="store_true", help="only the stage's per-pair work on --pairs pairs (item 4)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if a.only_pairs: return whole_stage_figures(Path(tmp) / "pairs", a.pairs, a.resamples)
        run, params = default_run(Path(tmp) / "ab", "data")
        ab_figures(load_truth(run)["suggestions"]["p_accept"].to_numpy(float), params, a.simulations)
        bootstrap_figures(a.pairs, a.resamples)
        matcher_path_figures(a.pairs, a.resamples)
        whole_stage_figures(Path(tmp) / "pairs", a.pairs, a.resamples)
        if not a.no_stage: stage_figures(Path(tmp) / "stage")


if __name__ == "__main__":
    main()
