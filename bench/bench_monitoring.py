"""Monitoring benchmarks; prints its figures.

1. The alert rules' operating characteristics on the generator, over many seeds (the stage runs a small version):
   - no drift (`data_drift` and `concept_drift` 0): the share of production windows in which any detector alarms
     (false alarms; target at most 5% over at least 100 windows, pooled seeds);
   - data drift only: the share of production windows with a data-drift alarm (target at least 90% at 0.3) and the
     mean delay to the first alarm, in windows;
   - concept drift only: the share of windows with a degradation alarm, the mean delay (label delay included), and
     the share with a data-drift alarm (which should stay low: the cause is told apart).
2. Batch scoring on one machine: pair features plus the matcher, milliseconds per row, rows per second and peak
   traced memory for a window of `--rows` pairs.

The matcher and the user transformer stand in for the stored ones: the models stage's logistic regression
(`make_logreg`) and the features stage's `UserFeatureTransformer`, fitted on a generated training data set (seed 0);
each calibration seed then generates a fresh data set whose history period is the reference and whose production
period is monitored, with the stage's default rules (`monitor_settings` of the default parameters): among them the
cumulative new-user level (`drift_cumulative`, on by default); `-p drift_cumulative false` measures the window-only rules.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_monitoring.py [--seeds 10] [--users 5000] [--strengths 0.3,1.0] [-p KEY VALUE]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from thinkalike_ml.config import resolve_params
from thinkalike_ml.data import age_band, generate_raw
from thinkalike_ml.features import UserFeatureTransformer, pair_features
from thinkalike_ml.models import make_logreg
from thinkalike_ml.monitoring import calibrate_detectors, calibration_summary, monitor_settings, score_window
from thinkalike_ml.tracking import measured


def stand_in_models(n_users: int, seed: int = 0) -> tuple[dict, UserFeatureTransformer]:
    "A matcher (logistic regression on every pair feature) and a user transformer fitted on one generated data set."
    raw, _ = generate_raw(n_users=n_users, n_items=20, interactions_per_user=1.0, seed=seed)
    users = raw["users"].assign(age_band=lambda u: age_band(u["age"]))
    feats = pair_features(users, raw["suggestions"])
    cols = list(feats.columns)
    matcher = {"model": make_logreg(seed).fit(feats[cols], raw["suggestions"]["accepted"]), "columns": cols}
    keep = ["user_id", "signup_time", "age_band", "gender", "region", *[c for c in users.columns if c.startswith("value_")], "interests"]
    return matcher, UserFeatureTransformer().set_output(transform="pandas").fit(users[keep])


def bench_scoring(matcher: dict, n_rows: int) -> dict:
    "Batch scoring of one window of `n_rows` generated pairs: ms per row, rows per second, peak traced MiB."
    raw, _ = generate_raw(n_users=max(1000, n_rows // 8), n_items=20, interactions_per_user=1.0, suggestions_per_user=max(8.0, n_rows / 1000), seed=7)
    pairs = raw["suggestions"].head(n_rows)
    t0 = time.perf_counter()
    score_window(matcher, raw["users"], pairs)
    seconds = time.perf_counter() - t0
    with measured() as m: score_window(matcher, raw["users"], pairs)
    return {"rows": len(pairs), "ms_per_row": 1000 * seconds / len(pairs), "rows_per_second": len(pairs) / seconds, "peak_traced_mib": m.peak_mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="generator seeds per scenario")
    ap.add_argument("--users", type=int, default=5000, help="users per generated data set")
    ap.add_argument("--strengths", default="0.3,1.0", help="comma-separated drift strengths")
    ap.add_argument("--rows", type=int, default=100_000, help="pairs in the batch-scoring window")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="change one run parameter of the rules")
    args = ap.parse_args()
    params = resolve_params(overrides=dict(args.param))
    settings = monitor_settings(params)
    matcher, transformer = stand_in_models(args.users)
    print(f"rules: {settings.window_days}-day windows, {settings.label_delay_days:g}-day label delay, alpha {settings.alpha} "
          f"({settings.family_alpha:g} per detector), {settings.correction}, PSI floor {settings.min_psi}, cumulative new-user level "
          f"{'on' if settings.cumulative else 'off'}; {args.users} users per data set")
    for strength in (float(s) for s in args.strengths.split(",")):
        t0 = time.perf_counter()
        alarms = calibrate_detectors(matcher, settings, [1000 + i for i in range(args.seeds)], strength, args.users, params, transformer)
        summary = calibration_summary(alarms, settings.window_days, settings.label_delay_days)
        print(f"\n== drift strength {strength}: {args.seeds} seeds per scenario, {time.perf_counter() - t0:.0f} s")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        s = summary.set_index(["scenario", "detector"])
        fa, n = s.loc[("no_drift", "any"), "alarm_rate"], int(s.loc[("no_drift", "any"), "windows"])
        det = s.loc[("data_drift", "data_drift"), "alarm_rate"]
        print(f"false-alarm rate, no drift: {fa:.3f} over {n} windows (target <= 0.05 over >= 100 windows: {'met' if fa <= 0.05 and n >= 100 else 'NOT met'})")
        print(f"data drift {strength}: windows detected {det:.3f} (target >= 0.90: {'met' if det >= 0.9 else 'NOT met'}), "
              f"mean delay {s.loc[('data_drift', 'data_drift'), 'mean_delay_windows']:.2f} windows")
        print(f"concept drift {strength}: degradation alarms in {s.loc[('concept_drift', 'degradation'), 'alarm_rate']:.3f} of windows "
              f"(mean delay {s.loc[('concept_drift', 'degradation'), 'mean_delay_windows']:.2f} windows), data-drift alarms in "
              f"{s.loc[('concept_drift', 'data_drift'), 'alarm_rate']:.3f}")
    sc = bench_scoring(matcher, args.rows)
    print(f"\nbatch scoring of {sc['rows']:,} pairs: {sc['ms_per_row']:.4f} ms per row, {sc['rows_per_second']:,.0f} rows/s, "
          f"peak traced memory {sc['peak_traced_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
