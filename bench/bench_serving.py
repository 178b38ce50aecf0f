"""Serving benchmark; prints its figures.

1. Batch: `score_file` on a Parquet file of pair features (the run's test pairs repeated to --rows rows), with the
   logistic matcher and with the calibrated gradient-boosted trees of the same run (goal: >= 500k pairs/s for the
   logistic matcher on 2 cores), plus the raw `predict_proba` rate without file input/output.
2. Online: the real server (`python -m thinkalike_ml.server`, one worker, threads pinned to 1) on 127.0.0.1, driven
   from this process by an asyncio aiohttp client at --rate requests/s (open loop: latency counts from each request's due
   time) over at most 64 keep-alive connections for --seconds, 10% of them malformed;
   p50/p95/p99 latency of the well-formed /v1/match requests, throughput, status counts (goal: p95 <= 5 ms, 0 5xx,
   every malformed request a 4xx). Once with ONNX Runtime scoring, once with scikit-learn/NumPy (--engines).
   Also 1000 sequential requests (p50/p95), the model card's figure (p95 < 20 ms).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_serving.py [--run RUN] [--rows 2000000] [--rate 200] [--seconds 30]

Without --run, the small profile's cached models are used (built on first use, a few minutes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from thinkalike_ml.serving import (_test_pairs, latency_sample, load_served, match_probability, running_server,
                                   score_file)
from thinkalike_ml.runs import RunDirectory


def models_run(ref: str | None) -> RunDirectory:
    if ref: return RunDirectory(load_served(ref).run_path)
    from thinkalike_ml.stages import open_stage
    return open_stage(None, "evaluation")[0]


def bench_batch(run: RunDirectory, rows: int) -> None:
    served = load_served(str(run.path))
    test = _test_pairs(run)
    with tempfile.TemporaryDirectory() as d:
        X = pd.concat([test[served.columns]] * int(np.ceil(rows / len(test))), ignore_index=True).head(rows)
        X.to_parquet(Path(d)/"pairs.parquet")
        for name, model in served.matcher["candidates"].items():
            served.matcher = {**served.matcher, "model": model, "selected": name}
            score_file(served, Path(d)/"pairs.parquet", Path(d)/"warm.parquet", progress=False)  # warm the page cache
            s = score_file(served, Path(d)/"pairs.parquet", Path(d)/"scores.parquet", progress=False)
            t0 = time.perf_counter()
            match_probability(served, X)
            raw = len(X) / (time.perf_counter() - t0)
            served.cache.clear()
            print(f"batch {name:6s}: {s.rows:,} pairs file-to-file in {s.seconds:.2f} s = {s.rows_per_second:,.0f} pairs/s "
                  f"(goal for logreg >= 500,000); predict_proba alone {raw:,.0f} pairs/s; load average {os.getloadavg()[0]:.1f}", flush=True)


def _bodies(served, test: pd.DataFrame, n: int, seed: int = 0) -> list[tuple[str, object, bool]]:
    "(kind, body, well-formed) for n requests: 90% valid matches by ids, 10% malformed of several kinds."
    rng = np.random.default_rng(seed)
    bad = [{"user_a": "x"}, {"user_a": 5, "user_b": "y"}, {"profile_a": {"values": {"Astrology": {"importance": .5}}}, "user_b": "x"},
           {"profile_a": {"values": {}, "gender": "f"}, "user_b": "x"}, "{not json", {"user_a": "nobody", "user_b": "nobody"}]
    out = []
    for i in range(n):
        if rng.random() < 0.1: out.append(("bad", bad[i % len(bad)], False))
        else:
            j = int(rng.integers(len(test)))
            out.append(("ok", {"user_a": str(test.user_a[j]), "user_b": str(test.user_b[j])}, True))
    return out


async def _drive(base: str, bodies: list, rate: float, connections: int = 64) -> list[tuple[bool, int, float]]:
    """Open-loop load: request i is due at start + i/rate, whatever happened before; its latency counts from that due time,
    so time spent waiting for a free connection is included (no coordinated omission).

    The client is aiohttp over at most `connections` keep-alive connections (requests beyond them wait in its FIFO queue).
    httpx's async client cost about 3 ms of CPU per request here (aiohttp about 0.7 ms, the server about 1 ms), and its
    connection pool spends CPU quadratic in the number of queued requests (httpcore 1.0's `_assign_requests_to_connections`,
    encode/httpcore#1035): on a busy machine the load generator itself fell behind, and reported seconds of latency while
    the server sat idle."""
    import aiohttp
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=connections),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def one(due: float, ok: bool, body) -> tuple[bool, int, float]:
            data = body if isinstance(body, str) else json.dumps(body)
            try:
                async with session.post("/v1/match", data=data, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    code = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError): code = -1
            return ok, code, time.perf_counter() - due
        start, tasks = time.perf_counter(), []
        for i, (_, body, ok) in enumerate(bodies):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0: await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, ok, body)))
        return await asyncio.gather(*tasks)


def bench_online(run: RunDirectory, rate: float, seconds: float, engines: list[str]) -> None:
    served = load_served(str(run.path))
    test = _test_pairs(run)
    for engine in engines:
        with running_server(str(run.path), "--rate-limit", "0", "--engine", engine) as (base, proc):
            import psutil
            cpu0 = sum(psutil.Process(proc.pid).cpu_times()[:2])
            seq = latency_sample(base, "/v1/match", [b for _, b, ok in _bodies(served, test, 1100, 1) if ok][:1000])
            cpu = (sum(psutil.Process(proc.pid).cpu_times()[:2]) - cpu0) / (len(seq) + 1)
            print(f"online [{engine}] sequential: {len(seq)} requests, p50 {np.percentile(seq, 50)*1000:.2f} ms, "
                  f"p95 {np.percentile(seq, 95)*1000:.2f} ms (model card: p95 < 20 ms); server CPU time per request {cpu*1000:.2f} ms "
                  f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
            bodies = _bodies(served, test, int(rate * seconds))
            la0, cpu1, client0 = os.getloadavg()[0], sum(psutil.Process(proc.pid).cpu_times()[:2]), time.process_time()
            t0 = time.perf_counter()
            res = asyncio.run(_drive(base, bodies, rate))
            wall, client_cpu = time.perf_counter() - t0, (time.process_time() - client0) / len(bodies)
            ok_lat = np.array([t for ok, code, t in res if ok and code == 200])
            codes = pd.Series([code for _, code, _ in res]).value_counts().sort_index()
            bad_codes = [code for ok, code, _ in res if not ok]
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
            load_cpu = (sum(psutil.Process(proc.pid).cpu_times()[:2]) - cpu1) / len(res)
            print(f"online [{engine}] load: {len(res):,} requests at {rate:g}/s target over {wall:.1f} s ({len(res)/wall:.1f}/s achieved); "
                  f"well-formed /v1/match p50 {np.percentile(ok_lat, 50)*1000:.2f} ms, p95 {np.percentile(ok_lat, 95)*1000:.2f} ms, "
                  f"p99 {np.percentile(ok_lat, 99)*1000:.2f} ms (goal p95 <= 5 ms; model card: 95% under 20 ms); server CPU time per request "
                  f"{load_cpu*1000:.2f} ms, load generator's {client_cpu*1000:.2f} ms; load average {la0:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)", flush=True)
            print(f"online [{engine}] statuses: {dict(codes)}; 5xx: {int(sum(c >= 500 for c in codes.index for _ in range(codes[c])))}; "
                  f"malformed answered 4xx: {sum(400 <= c < 500 for c in bad_codes)}/{len(bad_codes)}; server RSS {rss:.0f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a model reference (run folder, run id, NAME@ALIAS); default: the small profile's cached models")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--engines", default="onnx,sklearn")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--skip-online", action="store_true")
    a = ap.parse_args()
    run = models_run(a.run)
    if not a.skip_batch: bench_batch(run, a.rows)
    if not a.skip_online: bench_online(run, a.rate, a.seconds, a.engines.split(","))
