"""Serving: the batch CLI on the small profile's stored models (bad rows by row number, atomic output, agreement with the
stored predictions), registry references resolved through a real MLflow store, the real server on 127.0.0.1 (token,
validation, recommendations, metrics, rate limit), a changed model file refused, and ONNX parity on 10k pairs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from helpers import free_port, start_server, stop_server, wait_http

from thinkalike_ml.serving import (ModelRefError, export_onnx, load_served, onnx_parity, onnx_session,
                                   precompute_recommendations, profile_body, resolve_model, running_server)

TOKEN = "test-token-not-secret"


@pytest.fixture(scope="module")
def models_run():
    """A run holding the small profile's stored models (the cached upstream of the evaluation stage)."""
    from thinkalike_ml.stages import open_stage
    run, _ = open_stage(None, "evaluation")
    return run


def _cli(*args, **kw):
    return subprocess.run([str(Path(sys.executable).parent/"thinkalike-ml"), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, **kw)


def _stored_test(run):
    from thinkalike_ml.features import load_features
    from thinkalike_ml.models import load_models, load_predictions
    sel = load_models(run)["matcher"]["selected"]
    pf = load_features(run)["pair_features"]
    test = pf[pf["split"] == "test"].reset_index(drop=True)
    p = load_predictions(run)["matcher"]
    p = p[(p["split"] == "test") & (p["model"] == sel) & p["calibrated"]].set_index("suggestion_id")["p"]
    return test, p


def test_batch_score_cli_reports_bad_rows_by_number_and_matches_the_stored_predictions(models_run, tmp_path):
    served = load_served(str(models_run.path))
    test, stored = _stored_test(models_run)
    df = test[["suggestion_id", *served.columns]].copy()
    df.loc[3, served.columns[0]] = np.nan
    df.to_parquet(tmp_path/"pairs.parquet")
    r = _cli("score", "--model", f"{models_run.path}:matcher", "--input", str(tmp_path/"pairs.parquet"),
             "--output", str(tmp_path/"scores.parquet"), "--chunk-rows", "100", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{len(df) - 1:,} scored, 1 bad" in r.stderr
    assert f"row 3: column '{served.columns[0]}'" in r.stderr
    out = pd.read_parquet(tmp_path/"scores.parquet")
    assert len(out) == len(df) and out["row"].tolist() == list(range(len(df)))
    assert out.loc[3, "probability"] is None or np.isnan(out.loc[3, "probability"])
    good = out.drop(index=3).set_index("suggestion_id")["probability"]
    assert np.max(np.abs(good - stored.reindex(good.index))) < 1e-9
    # by user ids: the features are computed from the run's profiles, the same probabilities come back
    ids = test[["suggestion_id", "user_a", "user_b"]]
    pd.concat([ids, pd.DataFrame({"suggestion_id": ["x"], "user_a": ["nobody"], "user_b": [ids.user_b[0]]})]).to_csv(tmp_path/"ids.csv", index=False)
    r = _cli("score", "--model", str(models_run.path), "--input", str(tmp_path/"ids.csv"), "--output", str(tmp_path/"ids.parquet"), "--no-progress")
    assert r.returncode == 0 and f"row {len(ids)}: user_a: unknown user id" in r.stderr, r.stderr
    by_ids = pd.read_parquet(tmp_path/"ids.parquet").set_index("suggestion_id")["probability"].drop("x")
    assert np.max(np.abs(by_ids - stored.reindex(by_ids.index))) < 1e-9
    # strict: nothing written, no temporary file left; a file without the needed columns: a one-line error
    r = _cli("score", "--model", str(models_run.path), "--input", str(tmp_path/"pairs.parquet"), "--output", str(tmp_path/"strict.parquet"), "--strict")
    assert r.returncode == 2 and "row 3" in r.stderr and not (tmp_path/"strict.parquet").exists()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path/"nothing.parquet")
    r = _cli("score", "--model", str(models_run.path), "--input", str(tmp_path/"nothing.parquet"), "--output", str(tmp_path/"n.parquet"))
    assert r.returncode == 2 and "user_a and user_b" in r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_batch_recommend_cli_serves_known_and_new_users(models_run, tmp_path):
    served = load_served(str(models_run.path))
    known = [str(u) for u in served.recommender.data.users[:5]]
    new = served.users.loc[[known[0]]].reset_index().assign(user_id="brand-new")
    pd.concat([pd.DataFrame({"user_id": known}), new], ignore_index=True).to_parquet(tmp_path/"users.parquet")
    r = _cli("recommend", "--model", str(models_run.path), "--input", str(tmp_path/"users.parquet"), "--output", str(tmp_path/"recs.parquet"), "-k", "4")
    assert r.returncode == 0, r.stderr
    out = pd.read_parquet(tmp_path/"recs.parquet")
    assert out.groupby("user_id").size().eq(4).all() and set(out.user_id) == set(known) | {"brand-new"}
    assert set(out.loc[out.user_id == "brand-new", "path"]) == {"value_profile"} and set(out.loc[out.user_id != "brand-new", "path"]) == {"history"}


def test_registry_alias_resolves_to_the_tagged_run_folder(models_run, tmp_path):
    import mlflow
    uri = f"sqlite:///{tmp_path/'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("thinkalike-matcher")
    v = client.create_model_version("thinkalike-matcher", (tmp_path/"m").as_uri(), tags={"thinkalike_run": models_run.id, "report_path": str(models_run.path)})
    client.set_registered_model_alias("thinkalike-matcher", "champion", v.version)
    src = resolve_model("matcher@champion", tracking_uri=uri)
    assert src.run_path == models_run.path and src.kind == "matcher" and f"v{v.version}" in src.version and "@champion" in src.version
    assert load_served(src).version == src.version
    untagged = client.create_model_version("thinkalike-matcher", (tmp_path/"m").as_uri())
    client.set_registered_model_alias("thinkalike-matcher", "challenger", untagged.version)
    with pytest.raises(ModelRefError, match="neither a 'thinkalike_run' nor a 'report_path' tag"): resolve_model("matcher@challenger", tracking_uri=uri)
    with pytest.raises(ModelRefError, match=r"no version alias 'nope'.*it has matcher@challenger \(version 2\), matcher@champion \(version 1\)"):
        resolve_model("matcher@nope", tracking_uri=uri)
    client.delete_registered_model_alias("thinkalike-matcher", "champion")
    with pytest.raises(ModelRefError, match="no version has passed the promotion gates"): resolve_model("matcher@champion", tracking_uri=uri)


def test_latest_names_the_newest_run_and_an_empty_index_says_so(models_run, tmp_path):
    from thinkalike_ml.runs import new_manifest, update_index
    with pytest.raises(ModelRefError, match="no run folder or run id matches it"): resolve_model("latest:matcher", reports_dir=tmp_path)
    update_index(models_run, new_manifest(models_run, ["models"]), tmp_path)
    src = resolve_model("latest:matcher", reports_dir=tmp_path)
    assert src.run_path == models_run.path and src.kind == "matcher"


def test_onnx_parity_on_10k_pairs_with_missing_values(models_run):
    from thinkalike_ml.features import load_features
    from thinkalike_ml.models import load_models
    m = load_models(models_run)["matcher"]
    pf = load_features(models_run)["pair_features"]
    X = pf[m["columns"]].sample(10_000, replace=True, random_state=0).reset_index(drop=True)
    for name, model in m["candidates"].items():
        sess = onnx_session(export_onnx(model, len(m["columns"])))
        assert onnx_parity(model, sess, X) <= 1e-5, name
        if name == "hgb":  # trees take missing values; the logistic pipeline does not (scikit-learn refuses NaN there)
            Xm = X.mask(np.random.default_rng(0).random(X.shape) < 0.1)
            assert Xm.isna().any().any() and onnx_parity(model, sess, Xm) <= 1e-5


@pytest.fixture(scope="module")
def server(models_run, tmp_path_factory):
    """The real server on a free 127.0.0.1 port, with a bearer token, a small rate budget and precomputed lists; stopped afterwards."""
    d = tmp_path_factory.mktemp("server")
    served = load_served(str(models_run.path))
    precompute_recommendations(served).to_parquet(d/"pre.parquet")
    port = free_port()
    proc = start_server([sys.executable, "-m", "thinkalike_ml.server", "--model", str(models_run.path), "--host", "127.0.0.1", "--port", str(port),
                         "--precomputed", str(d/"pre.parquet"), "--rate-limit", "10", "--rate-burst", "30", "--max-body-bytes", "4096"],
                        d/"server.log", env={**os.environ, "THINKALIKE_API_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/ready", timeout=180, proc=proc)
        yield base, served
    finally:
        stop_server(proc)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_and_ready_answer_without_a_token(server):
    base, served = server
    assert requests.get(base + "/health").json() == {"status": "ok"}
    ready = requests.get(base + "/ready").json()
    assert ready["ready"] and ready["threads"] == [1] and ready["engine"] == "onnx" and ready["precomputed_users"] > 0
    assert ready["sha256"]["artifacts/models/matcher.pkl"] == served.sha256["artifacts/models/matcher.pkl"]
    assert "/v1/match" in requests.get(base + "/openapi.json").json()["paths"]


def test_the_api_needs_the_right_bearer_token(server):
    base, served = server
    body = {"user_a": str(served.users.index[0]), "user_b": str(served.users.index[1])}
    assert requests.post(base + "/v1/match", json=body).status_code == 401
    assert requests.post(base + "/v1/match", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.post(base + "/v1/match", json=body, headers=AUTH).status_code == 200


def test_match_by_ids_and_by_profiles_gives_the_stored_probability_with_reasons(server, models_run):
    base, served = server
    test, stored = _stored_test(models_run)
    for i in range(5):
        a, b, sid = str(test.user_a[i]), str(test.user_b[i]), test.suggestion_id[i]
        r = requests.post(base + "/v1/match", json={"user_a": a, "user_b": b}, headers=AUTH).json()
        assert r["probability"] == pytest.approx(stored[sid], abs=1e-5) and r["matching_percentage"] == round(100 * r["probability"], 1)
        assert r["model_version"] == f"run {models_run.id}" and isinstance(r["reasons"], list)
        assert not any(ch.isdigit() for ch in " ".join(r["reasons"]))
        rp = requests.post(base + "/v1/match", json={"profile_a": profile_body(served, a), "profile_b": profile_body(served, b)}, headers=AUTH).json()
        # a posted profile is a person without interaction history: the same features, with history_cosine 0
        from thinkalike_ml.serving import match_probability, pair_matrix
        X = pair_matrix(served, served.users.reset_index(), pd.DataFrame({"user_a": [a], "user_b": [b]}))
        if "history_cosine" in X: X["history_cosine"] = 0.0
        assert rp["probability"] == pytest.approx(float(match_probability(served, X)[0]), abs=1e-5)
        assert isinstance(rp["reasons"], list) and not any(ch.isdigit() for ch in " ".join(rp["reasons"]))


def _client_inputs(categories: list[str], pa: dict, pb: dict) -> dict:
    """What the serving notebook documents an edge client computes from two API profiles, written here without the
    library: per category importance and position (NaN if absent), interest-set sizes and overlap, signup days."""
    from datetime import datetime, timezone
    def vec(p, key): return [np.nan if (p["values"].get(c) or {}).get(key) is None else p["values"][c][key] for c in categories]
    def interests(p): return {s.strip().lower() for i in p.get("interests", []) for s in i.split(";") if s.strip()}
    def days(p):
        if not p.get("signup_time"): return np.nan
        t = datetime.fromisoformat(p["signup_time"])
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp() / 86400
    sa, sb = interests(pa), interests(pb)
    row = lambda *xs: np.array([xs], np.float64)
    return {"importance_a": row(*vec(pa, "importance")), "position_a": row(*vec(pa, "position")),
            "importance_b": row(*vec(pb, "importance")), "position_b": row(*vec(pb, "position")),
            "interest_counts": row(len(sa), len(sb), len(sa & sb)), "signup_days": row(days(pa), days(pb))}


def test_the_edge_model_with_documented_client_inputs_gives_the_servers_probability(server, models_run, tmp_path):
    """The profile-input ONNX model from `export-onnx --profiles`, fed what the notebook says a client computes, reproduces
    /v1/match's probability for the same two profiles, with categories, positions, interests and signup dates missing."""
    import json, time
    import onnxruntime as ort
    base, served = server
    r = _cli("export-onnx", "--model", str(models_run.path), "--profiles", "--output", str(tmp_path/"edge.onnx"))
    assert r.returncode == 0, r.stderr
    sess = ort.InferenceSession(str(tmp_path/"edge.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    cats = json.loads(meta["categories"])
    assert sorted(i.name for i in sess.get_inputs()) == sorted(["importance_a", "position_a", "importance_b", "position_b", "interest_counts", "signup_days"])
    test, _ = _stored_test(models_run)
    gaps = []
    for i in range(8):
        pa, pb = profile_body(served, str(test.user_a[i])), profile_body(served, str(test.user_b[i]))
        if i % 2: pa["values"].pop(cats[i % len(cats)]); pb["values"][cats[0]]["position"] = None; pa.pop("signup_time", None)
        if i % 3 == 0: pa["interests"] = [s.upper() + " " for s in pa["interests"]] + ["  "]; pb["interests"] = []
        for _ in range(20):
            resp = requests.post(base + "/v1/match", json={"profile_a": pa, "profile_b": pb}, headers=AUTH)
            if resp.status_code != 429: break
            time.sleep(0.5)
        assert resp.status_code == 200, resp.text
        p_edge = sess.run(["probability"], _client_inputs(cats, pa, pb))[0][0, 0]
        gaps.append(abs(p_edge - resp.json()["probability"]))
    assert max(gaps) <= 1e-5, gaps


@pytest.mark.parametrize("body, status, field", [
    ({"user_a": "x"}, 422, "give exactly one of user_b and profile_b"),
    ({"user_a": 5, "user_b": "y"}, 422, "user_a"),
    ({"user_a": "nobody", "user_b": "nobody"}, 404, "user_a"),
    ({"profile_a": {"values": {"Astrology": {"importance": 0.5}}}, "user_b": "x"}, 422, "Astrology"),
    ({"profile_a": {"values": {}, "gender": "female"}, "user_b": "x"}, 422, "gender"),
    ({"profile_a": {"values": {"Privacy": {"importance": 7}}}, "user_b": "x"}, 422, "importance"),
    ("{not json", 422, "json"),
    ({"user_a": "a" * 5000, "user_b": "b"}, 413, "bytes"),
])
def test_malformed_match_requests_get_a_4xx_naming_the_field(server, body, status, field):
    base, _ = server
    r = (requests.post(base + "/v1/match", data=body, headers={**AUTH, "Content-Type": "application/json"}) if isinstance(body, str)
         else requests.post(base + "/v1/match", json=body, headers=AUTH))
    assert r.status_code == status and field in r.text, r.text
    assert "Traceback" not in r.text


def test_recommend_precomputed_online_and_cold_start(server):
    base, served = server
    known = str(served.recommender.data.users[0])
    r = requests.post(base + "/v1/recommend", json={"user_id": known}, headers=AUTH).json()
    assert r["path"] == "precomputed" and len(r["items"]) == served.recommender.k
    online = requests.post(base + "/v1/recommend", json={"user_id": known, "k": served.recommender.k + 2}, headers=AUTH).json()
    assert online["path"] == "history" and [i["item_id"] for i in online["items"][: served.recommender.k]] == [i["item_id"] for i in r["items"]]
    cold = requests.post(base + "/v1/recommend", json={"profile": profile_body(served, known), "k": 3}, headers=AUTH).json()
    assert cold["path"] == "value_profile" and len(cold["items"]) == 3
    assert requests.post(base + "/v1/recommend", json={"k": 0, "user_id": known}, headers=AUTH).status_code == 422
    assert requests.post(base + "/v1/recommend", json={}, headers=AUTH).status_code == 422


def test_metrics_count_requests_by_status_with_latency_and_the_model_version(server, models_run):
    base, _ = server
    text = requests.get(base + "/metrics").text
    assert 'thinkalike_requests_total{endpoint="/v1/match",status="200"}' in text
    assert 'thinkalike_requests_total{endpoint="/v1/match",status="401"}' in text
    assert 'thinkalike_request_seconds_bucket{endpoint="/v1/match",le="0.005"}' in text
    assert f'thinkalike_model_info{{matcher_sha256="' in text and f'version="run {models_run.id}"' in text
    assert not [l for l in text.splitlines() if l.startswith("thinkalike_requests_total") and "/v1/" in l and 'status="5' in l]


def test_zz_a_client_past_its_budget_gets_429(server):
    base, served = server
    body = {"user_a": str(served.users.index[0]), "user_b": str(served.users.index[1])}
    with requests.Session() as s:
        codes = [s.post(base + "/v1/match", json=body, headers=AUTH).status_code for _ in range(100)]
    assert 429 in codes and set(codes) <= {200, 429}


def test_a_changed_model_file_is_refused(models_run, tmp_path):
    copy = tmp_path/"run"
    shutil.copytree(models_run.path, copy)
    f = copy/"artifacts/models/matcher.pkl"
    f.write_bytes(f.read_bytes() + b"\0")
    r = subprocess.run([sys.executable, "-m", "thinkalike_ml.server", "--model", str(copy), "--port", str(free_port())],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 3 and "refusing to load it" in r.stderr, r.stderr[-2000:]


def test_running_servers_output_never_blocks_it_and_a_failed_start_quotes_it(models_run, tmp_path):
    """A server logging every ASGI message writes over 64 KiB (a pipe's buffer) in a few hundred requests and keeps
    answering; a server that cannot start is reported with the end of its output."""
    with running_server(str(models_run.path), "--rate-limit", "0", "--log-level", "trace", log=tmp_path/"server.log") as (base, _):
        with requests.Session() as s:
            for _ in range(400): assert s.get(base + "/health", timeout=10).status_code == 200
    assert (tmp_path/"server.log").stat().st_size > 2**16
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3: .*no run folder or run id matches it"):
        with running_server(str(tmp_path/"no-such-run"), timeout=120): pass


def test_running_server_works_meanwhile_and_stops_the_server_if_that_work_fails(models_run):
    """`meanwhile` runs after the server process started and before the wait for /ready (the serving stage's batch and edge
    checks); if it fails, the error comes through and the server is stopped."""
    import psutil
    other = {c.pid for c in psutil.Process().children()}  # e.g. another test's server, still running
    # every child started since the test began is a server; not filtered by command line, since reading the command line of
    # a child that exits meanwhile raises psutil.NoSuchProcess (the test failed once under load, cause not confirmed)
    servers = lambda: [c for c in psutil.Process().children() if c.pid not in other]
    seen = {}
    def meanwhile(): seen["children"] = [c.pid for c in servers()]
    with running_server(str(models_run.path), meanwhile=meanwhile) as (base, proc):
        assert proc.pid in seen["children"] and requests.get(base + "/ready", timeout=10).status_code == 200
    def fail():
        seen["server"] = servers()
        raise ValueError("the work done meanwhile failed")
    with pytest.raises(ValueError, match="done meanwhile failed"):
        with running_server(str(models_run.path), meanwhile=fail): pass
    assert seen["server"] and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in seen["server"])


def _dockerfile() -> dict:
    "The Dockerfile's ENV settings, the RUN commands, the files it copies and its ENTRYPOINT (exec form)."
    import json, re, shlex
    text = (Path(__file__).resolve().parents[1]/"Dockerfile").read_text()
    lines = re.sub(r"\\\n\s*", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))).splitlines()
    out = {"env": {}, "run": [], "copy": [], "entry": None, "health": None}
    for l in lines:
        word, _, rest = l.strip().partition(" ")
        if word == "ENV": out["env"] |= dict(kv.split("=", 1) for kv in shlex.split(rest))
        elif word == "RUN": out["run"].append(rest)
        elif word == "COPY": out["copy"].append(rest.split())
        elif word == "ENTRYPOINT": out["entry"] = json.loads(rest)
        elif word == "HEALTHCHECK": out["health"] = json.loads(rest[rest.index("CMD") + 3:])
    return out


@pytest.mark.slow
def test_the_dockerfiles_commands_build_and_serve(models_run, tmp_path):
    """No container engine here: the Dockerfile's copies and pip command run in a fresh virtual environment, then its
    entry command (on a free port of 127.0.0.1 instead of 0.0.0.0:8000) serves the run, and its healthcheck passes."""
    root, d = Path(__file__).resolve().parents[1], _dockerfile()
    app = tmp_path/"app"; app.mkdir()
    for *srcs, dst in (c for c in d["copy"] if not c[0].startswith("$")):  # the model is given by THINKALIKE_MODEL below
        for s in srcs:
            if (root/s).is_dir(): shutil.copytree(root/s, app/Path(dst).name, ignore=shutil.ignore_patterns("__pycache__"))
            else: shutil.copy(root/s, app/Path(s).name)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path/"venv")], check=True)
    py = str(tmp_path/"venv/bin/python")
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}, **d["env"]}
    env.pop("PIP_NO_CACHE_DIR")  # the image keeps no pip cache; here the machine's cache only makes the same install faster
    pip = [c for c in d["run"] if "pip install" in c]
    assert pip == ["python -m pip install -c requirements.lock ."]
    subprocess.run([py, *pip[0].split()[1:]], cwd=app, env=env, check=True, capture_output=True, timeout=1800)
    port = free_port()
    entry = [py if a == "python" else a for a in d["entry"]]
    entry[entry.index("--host") + 1], entry[entry.index("--port") + 1] = "127.0.0.1", str(port)
    proc = start_server(entry, tmp_path/"server.log", cwd=tmp_path, env={**env, "THINKALIKE_MODEL": str(models_run.path)})
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=300, proc=proc)
        health = [py if a == "python" else a.replace(":8000", f":{port}") for a in d["health"]]
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        r = requests.post(f"http://127.0.0.1:{port}/v1/match", json={"user_a": str(models_run.path)}, timeout=10)
        assert r.status_code == 422
    finally:
        stop_server(proc)


def test_the_stage_on_the_small_profile(tmp_path):
    """The serving stage on the cached small upstream: batch equals the stored predictions, ONNX parity, a real latency
    sample, the hybrid's hit rate, and a deployment document quoting the run's own figures."""
    from thinkalike_ml.serving import DEPLOYMENT_DOC, MATCHER_ONNX, load_serving
    from thinkalike_ml.stages import execute_stage, open_stage
    run, params = open_stage(None, "serving")
    m = execute_stage(run, "serving", params)
    assert m["batch_bad_rows"] == 0 and m["batch_max_abs_diff_stored"] < 1e-9 and m["batch_ids_max_abs_diff_stored"] < 1e-9
    assert m["onnx_max_abs_diff"] <= 1e-5 and run.read_artifact(MATCHER_ONNX)
    assert 0 < m["api_match_p50_seconds"] <= m["api_match_p95_seconds"] <= m["api_match_p99_seconds"] and m["api_requests"] > 0
    assert 0 <= m["hybrid_hit_rate"] <= 1 and m["hybrid_users_precomputed"] > 0
    doc = load_serving(run)["deployment"]
    assert f"{m['batch_pairs_per_second']:,.0f} pairs/s" in doc and f"p95 {1000 * m['api_match_p95_seconds']:,.2f} ms" in doc
    assert "not measured" not in doc.split("## Resources")[0]
