"""Fairness benchmarks; prints its figures.

1. The full per-attribute fairness report (MetricFrame per group + summaries with cell-bootstrap intervals) of 1M
   predictions with 1,000 resamples, three attributes and one intersection (target: at most 20 s on 2 cores); and the
   population demographic parity (`population_parity`) of 1M unlabelled candidate pairs among 50,000 people with 1,000
   people-bootstrap resamples. Wall and CPU seconds are printed with the load average (the machine may be shared).
2. The bias detector's calibration on the generator: with `group_bias 0` the share of seeded data sets in which it
   flags any region (false alarms; target at most 5%), and with the default `group_bias` the share in which it flags
   the penalised region and no other region (target at least 90%).

The detector here is the stage's data part: group-versus-rest base-rate z-tests of every group of gender, age band and
region, by the suggested and the receiving person, Holm-corrected together; it names the groups significantly below
the rest. (The stage also adds the prediction tests
to the same Holm family, which only makes it more conservative.) Each seed generates a full default-size data set
(5,000 users, 10 suggestions each) with the project's generator, before the consent filter.

3. The registry's fairness gate (`fairness_gate_verdict`): how often it says fail / inconclusive / pass when the true
   gated difference is 0, exactly the threshold (the least favourable case for a false 'fail'; target at most 5%) and
   twice the threshold, on simulated decisions with the default test split's group sizes (6,404 rows: gender, age band,
   region) and on ten times as many rows. Only the region carries a difference: its penalised group's decision rate is
   lower by the true difference for positives and negatives alike, so its DP, TPR and FPR differences all equal it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_fairness.py [--seeds 200] [--rows 1000000] [--skip-detector] [--gate-sims 2000] [--skip-gate]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from thinkalike_ml.config import PARAMS
from thinkalike_ml.data import BIAS_GROUP, age_band, generate_raw
from thinkalike_ml.fairness import (fairness_gate_verdict, fairness_report, group_vs_rest_tests, holm, intersection_column, pair_attributes,
                                    population_pairs, population_parity)

# the default run's test split (suggested side): rows per group
DEFAULT_TEST_GROUPS = {"gender": {"female": 3102, "male": 2823, "non-binary": 335, "unknown": 144},
                       "age_band": {"25-34": 2407, "35-44": 1723, "18-24": 962, "45-54": 744, "55-64": 291, "65+": 166, "unknown": 111},
                       "region": {"North": 1555, "West": 1300, "South": 1279, "East": 1219, "Central": 906, "unknown": 145}}


def gate_rates(true_difference: float, threshold: float = 0.05, n_sims: int = 2000, scale: int = 1, seed: int = 0,
               base_rate: float = 0.3, decision_rate: float = 0.35) -> dict:
    "Verdict rates of the fairness gate over `n_sims` simulated test splits (`scale` times the default split's group sizes)."
    rng = np.random.default_rng(seed)
    n = sum(DEFAULT_TEST_GROUPS["gender"].values()) * scale
    counts = {"pass": 0, "inconclusive": 0, "fail": 0}
    for _ in range(n_sims):
        sens = pd.DataFrame({a: rng.choice(list(g), n, p=np.array(list(g.values())) / sum(g.values())) for a, g in DEFAULT_TEST_GROUPS.items()})
        y = (rng.random(n) < base_rate).astype(int)
        rate = np.where(sens["region"].to_numpy() == BIAS_GROUP, decision_rate - true_difference, decision_rate)
        d = (rng.random(n) < rate).astype(int)  # decisions independent of y within a group: TPR and FPR differ by the same amount
        counts[fairness_gate_verdict(y, d, sens, threshold)["verdict"]] += 1
    return {k: v / n_sims for k, v in counts.items()}


def bench_gate(n_sims: int, threshold: float = 0.05) -> None:
    "Print the gate's verdict rates at true differences 0, the threshold and twice the threshold, at 1x and 10x the default test rows."
    for scale, sims in ((1, n_sims), (10, max(50, n_sims // 10))):
        for delta in (0.0, threshold, 2 * threshold):
            t0 = time.perf_counter()
            r = gate_rates(delta, threshold, sims, scale)
            print(f"gate, {scale}x default test rows, true difference {delta:.2f} (threshold {threshold}), {sims} simulations: "
                  f"fail {r['fail']:.3f}, inconclusive {r['inconclusive']:.3f}, pass {r['pass']:.3f} ({time.perf_counter() - t0:.0f} s)")


def bench_report(n_rows: int, n_bootstrap: int = 1000, seed: int = 0) -> tuple[float, float]:
    "(wall, CPU) seconds for the fairness report of `n_rows` synthetic predictions on three attributes and one intersection."
    rng = np.random.default_rng(seed)
    sens = pd.DataFrame({"gender": rng.choice(["female", "male", "non-binary"], n_rows, p=[.48, .48, .04]),
                         "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], n_rows),
                         "region": rng.choice(["Central", "East", "North", "South", "West"], n_rows)})
    p = rng.beta(2, 5, n_rows)
    y = (rng.random(n_rows) < p).astype(int)
    t0, c0 = time.perf_counter(), time.process_time()
    groups, summary = fairness_report(y, p, sens, 0.3, n_bootstrap=n_bootstrap, seed=seed)
    inter = intersection_column(sens, summary)
    fairness_report(y, p, inter, 0.3, n_bootstrap=n_bootstrap, seed=seed)
    return time.perf_counter() - t0, time.process_time() - c0


def bench_population(n_pairs: int, n_people: int = 50_000, n_bootstrap: int = 1000, seed: int = 0) -> tuple[float, float]:
    "(wall, CPU) seconds for `population_parity` of `n_pairs` candidate pairs' decisions among `n_people` people (three attributes, people bootstrap)."
    rng = np.random.default_rng(seed)
    people = np.array([f"u{i}" for i in range(n_people)], dtype=object)
    attrs = pd.DataFrame({"gender": rng.choice(["female", "male", "non-binary"], n_people, p=[.48, .48, .04]),
                          "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], n_people),
                          "region": rng.choice(["Central", "East", "North", "South", "West"], n_people)})
    pairs = population_pairs(people, n_pairs, seed)
    idx = pd.Index(people).get_indexer(pairs["user_b"])
    d = (rng.random(n_pairs) < 0.2).astype(int)
    t0, c0 = time.perf_counter(), time.process_time()
    population_parity(d, attrs.iloc[idx].reset_index(drop=True), pairs["user_b"], n_bootstrap=n_bootstrap, seed=seed)
    return time.perf_counter() - t0, time.process_time() - c0


def detector_findings(group_bias: float, seed: int, n_users: int = 5000, per_user: float = 10.0) -> set:
    "The (side, attribute, group) findings of the detector's data part on one generated data set."
    raw, _ = generate_raw(n_users=n_users, suggestions_per_user=per_user, interactions_per_user=1.0, group_bias=group_bias, seed=seed)
    users = raw["users"].assign(age_band=lambda u: age_band(u["age"]))
    sugg = raw["suggestions"]
    attrs = ["gender", "age_band", "region"]
    sides = pair_attributes(sugg, users, attrs)
    tests = pd.concat([group_vs_rest_tests(sugg["accepted"], sides[side][a]).assign(side=side, attribute=a)
                       for side in ("suggested", "receiver") for a in attrs], ignore_index=True)
    tests["p_holm"] = holm(tests["p_value"])
    found = tests[(tests["p_holm"] < 0.05) & (tests["effect"] < 0)]  # the groups the stage names: significantly below the rest
    return set(zip(found["side"], found["attribute"], found["group"]))


def bench_detector(n_seeds: int) -> dict:
    "False-alarm rate (no bias) and detection rate (default bias) of the detector over `n_seeds` seeds each."
    default_bias = PARAMS["group_bias"].default
    false_alarm, detected, wrong = 0, 0, 0
    t0 = time.perf_counter()
    for s in range(n_seeds):
        false_alarm += any(a == "region" for _, a, _ in detector_findings(0.0, 10_000 + s))
        regions = {g for _, a, g in detector_findings(default_bias, 20_000 + s) if a == "region"}
        detected += regions == {BIAS_GROUP}
        wrong += bool(regions - {BIAS_GROUP})
    return {"seeds": n_seeds, "false_alarm_rate": false_alarm / n_seeds, "detection_rate": detected / n_seeds,
            "other_region_named_rate": wrong / n_seeds, "group_bias": default_bias, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--skip-detector", action="store_true")
    ap.add_argument("--gate-sims", type=int, default=2000)
    ap.add_argument("--skip-gate", action="store_true")
    ap.add_argument("--skip-report", action="store_true")
    a = ap.parse_args()
    if not a.skip_gate: bench_gate(a.gate_sims)
    if not a.skip_report:
        import os
        wall, cpu = bench_report(a.rows)
        print(f"fairness report, {a.rows:,} predictions, 1,000 resamples, 3 attributes + 1 intersection: {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"(load average {os.getloadavg()[0]:.2f})")
        wall, cpu = bench_population(a.rows)
        print(f"population parity, {a.rows:,} candidate pairs among 50,000 people, 1,000 people-bootstrap resamples, 3 attributes: "
              f"{wall:.2f} s wall, {cpu:.2f} s CPU (load average {os.getloadavg()[0]:.2f})")
    if not a.skip_detector:
        r = bench_detector(a.seeds)
        print(f"detector over {r['seeds']} seeds per setting ({r['seconds']:.0f} s): false-alarm rate (group_bias 0) "
              f"{r['false_alarm_rate']:.3f}; detection rate (group_bias {r['group_bias']}, '{BIAS_GROUP}' and no other region) "
              f"{r['detection_rate']:.3f}; another region named {r['other_region_named_rate']:.3f}")
