"""Time and peak memory of the data stage's generation, cleaning and versioning at 1x, 10x and 100x the default size.

Each size runs in its own subprocess, so peak memory (the process's maximum resident set size, ru_maxrss) is that
size's alone; the high-water mark is read after each phase, so the phase that raised it shows.

    .venv/bin/python bench/bench_data.py                 # 1x, 10x, 100x (100x takes minutes)
    .venv/bin/python bench/bench_data.py --sizes 1 10
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
DEFAULT = dict(n_users=5000, n_items=300)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(scale: float, store: str) -> dict:
    """Run generation, cleaning and versioning once at `scale` x the default size; return timings and memory."""
    os.environ.setdefault("THINKALIKE_PSEUDONYM_KEY", "bench-key")  # never touch the project's secret
    from thinkalike_ml import data as D
    from thinkalike_ml.config import resolve_params
    params = resolve_params(overrides={"n_users": int(DEFAULT["n_users"] * scale), "n_items": int(DEFAULT["n_items"] * scale),
                                       "dataset_store": store})
    key, out = D.pseudonym_key(), {"scale": scale, "baseline_mib": round(_peak_mib(), 1)}

    t = time.perf_counter()
    raw, truth = D.collect_raw(params)
    out.update(generate_s=time.perf_counter() - t, generate_peak_mib=_peak_mib(), rows={k: len(v) for k, v in raw.items()})

    t = time.perf_counter()
    conformed = {name: D.conform(name, df)[0] for name, df in raw.items()}
    del raw
    consented, consent = D.apply_consent(conformed, set(), key)
    cleaned, quality = D.check_quality(D.apply_privacy(consented, key))
    tables = D.finalize(cleaned)
    out.update(clean_s=time.perf_counter() - t, clean_peak_mib=_peak_mib())

    t = time.perf_counter()
    digest = D.dataset_hash(tables)
    manifest = {"version": digest[:16], "hash": digest, "source": "synthetic", "created": "bench",
                "row_counts": {n: len(df) for n, df in tables.items()}, "schema": {}, "parameters": {},
                "consent": consent, "quality": D._quality_summary(quality)}
    D.write_version(Path(store), tables, manifest, D.make_datasheet(manifest, tables))
    out.update(version_s=time.perf_counter() - t, version_peak_mib=_peak_mib(), clean_rows=manifest["row_counts"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1, 10, 100], help="multiples of the default size (5000 users, 300 items)")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(a.child, a.store)))
        return
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    print(f"{'size':>5} {'users':>9} {'interactions':>12} {'suggestions':>11} | {'generate':>9} {'clean':>9} {'version':>9} "
          f"{'total':>9} | peak MiB: {'gen':>7} {'clean':>7} {'version':>7}")
    for scale in a.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-data-") as store:
            r = subprocess.run([sys.executable, __file__, "--child", str(scale), "--store", store], env=env,
                               capture_output=True, text=True)
        if r.returncode:
            print(f"{scale:>4g}x failed:\n{r.stderr[-2000:]}")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        total = m["generate_s"] + m["clean_s"] + m["version_s"]
        print(f"{scale:>4g}x {m['rows']['users']:>9,} {m['rows']['interactions']:>12,} {m['rows']['suggestions']:>11,} | "
              f"{m['generate_s']:>8.2f}s {m['clean_s']:>8.2f}s {m['version_s']:>8.2f}s {total:>8.2f}s | "
              f"{' ' * 10}{m['generate_peak_mib']:>7.0f} {m['clean_peak_mib']:>7.0f} {m['version_peak_mib']:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
