"""The registry stage against a real MLflow Model Registry (a temporary SQLite store, and a real `mlflow server` in the slow tier):
versions with lineage tags and aliases, the version rules across registrations, a worse model and a model failing the fairness
threshold refused, a better one promoted, the environment warning on load, and `thinkalike-ml reproduce`."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import free_port, start_server, stop_server, temporary_registry, wait_http

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("thinkalike-ml"))
UPSTREAM = ("data", "splits", "features", "models", "evaluation", "fairness")  # what the registry reads
SMALL = dict(n_users=300, n_items=40, n_trials=2, n_bootstrap=200)
_names = itertools.count()


def _small_run(folder: Path, **overrides):
    "A small run of the registry's upstream stages, tracked to whatever MLFLOW_TRACKING_URI says."
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.runs import RunDirectory
    from thinkalike_ml.stages import execute_stage
    params = resolve_params(overrides=SMALL | overrides, small=True)
    run = RunDirectory.create(params, folder)
    for s in UPSTREAM: execute_stage(run, s, params)
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    "A temporary SQLite tracking store and model registry, set as MLFLOW_TRACKING_URI for the module."
    folder = tmp_path_factory.mktemp("registry")
    with temporary_registry(folder) as uri: yield uri, folder


@pytest.fixture(scope="module")
def base_run(store):
    "The upstream of the registry on the small profile, tracked into the temporary store."
    return _small_run(store[1] / "reports")


@pytest.fixture()
def names(monkeypatch):
    "Fresh registered-model names for one test: each test starts with an empty registry in the shared store."
    import thinkalike_ml.registry as reg
    n = next(_names)
    fresh = {f: f"test{n}-{f}" for f in reg.MODEL_NAMES}
    monkeypatch.setattr(reg, "MODEL_NAMES", fresh)
    return fresh


def _copy(run, folder: Path, **params):
    "A copy of `run` (same MLflow run and logged models) with some parameters changed."
    from thinkalike_ml.runs import RunDirectory
    copy = RunDirectory(shutil.copytree(run.path, folder))
    copy.write_json("params.json", copy.params | params)
    return copy


def _register(run):
    from thinkalike_ml.registry import load_registry
    from thinkalike_ml.stages import execute_stage
    execute_stage(run, "registry", run.params)
    return load_registry(run)["summary"]["models"]


def _client(store):
    import mlflow
    return mlflow.MlflowClient(store[0], registry_uri=store[0])


def _aliases(client, name) -> dict:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _worse_matcher(run, folder: Path):
    """A copy of `run` whose matcher is deliberately worse (fitted on shuffled labels), stored, logged to a new MLflow run with
    the recommender, and then evaluated and fairness-checked again by the pipeline's own stages."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from thinkalike_ml.features import load_features
    from thinkalike_ml.models import (MATCHER_MODEL, MATCHER_PREDICTIONS, _recommender_pyfunc, _write_verified_table, load_models,
                                      load_predictions)
    from thinkalike_ml.stages import execute_stage
    from thinkalike_ml.tracking import TRACKING_FILE, tracking_record, use_store
    copy = _copy(run, folder)
    stored, feats = load_models(copy), load_features(copy)
    cols, pf = stored["matcher"]["columns"], feats["pair_features"]
    train = pf[pf["split"] == "train"]
    shuffled = np.random.default_rng(0).permutation(train["accepted"].to_numpy())
    worse = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[cols], shuffled)
    copy.save_object(MATCHER_MODEL, stored["matcher"] | {"model": worse})
    preds = load_predictions(copy)["matcher"]
    mine = (preds["model"] == stored["matcher"]["selected"]) & preds["calibrated"]
    p = pf.set_index("suggestion_id")
    preds.loc[mine, "p"] = worse.predict_proba(p.loc[preds.loc[mine, "suggestion_id"], cols])[:, 1]
    _write_verified_table(copy, MATCHER_PREDICTIONS, preds)
    rec = tracking_record(copy)
    use_store(rec["tracking_uri"])
    with mlflow.start_run(experiment_id=rec["experiment_id"], run_name="worse-matcher") as r:
        ex = pf[cols].head(5)
        mlflow.sklearn.log_model(worse, name="matcher", signature=infer_signature(ex, worse.predict_proba(ex)), input_example=ex,
                                 pyfunc_predict_fn="predict_proba")
        py = _recommender_pyfunc()(stored["recommender"])
        ex = pd.DataFrame({"user_id": [str(u) for u in stored["recommender"].data.users[:3]]})
        mlflow.pyfunc.log_model(name="recommender", python_model=py, signature=infer_signature(ex, py.predict(None, ex)))
    copy.write_json(TRACKING_FILE, rec | {"run_id": r.info.run_id})
    for s in ("evaluation", "fairness"): execute_stage(copy, s, copy.params)
    return copy


def test_a_first_registration_is_1_0_0_with_lineage_tags_signature_and_the_lock(store, base_run, names, tmp_path):
    from mlflow.models import get_model_info
    run = _copy(base_run, tmp_path / "run", fairness_threshold=1.0, max_calibration_error=1.0)
    models = _register(run)
    client = _client(store)
    for family, name in names.items():
        r = models[family]
        assert (r["version"], r["semver"], r["level"]) == (1, "1.0.0", "FIRST")
        mv = client.get_model_version_by_alias(name, "champion")  # how serving resolves the champion
        t = mv.tags
        assert t["semver"] == "1.0.0" and t["thinkalike_run"] == run.id and t["report_path"] == str(run.path)
        assert t["dataset_version"] == run.read_json("artifacts/data/dataset.json")["version"]
        assert t["params_hash"] and t["code_commit"] and t["code_dirty"] in ("true", "false") and t["python"] and t["platform"]
        assert t["mlflow_run_id"] == json.loads((run.path / "artifacts/tracking.json").read_text())["run_id"] == mv.run_id
        lock = (ROOT / "requirements.lock").read_bytes()
        import hashlib
        assert t["requirements_lock"] == hashlib.sha256(lock).hexdigest()[:16]
        assert t["env.scikit-learn"] and t["env.numpy"] and t["env.pandas"]
        info = get_model_info(mv.source)
        assert info.signature is not None and info.saved_input_example_info is not None
    # the lock and the installed package set are artifacts of the MLflow run
    rid = models["matcher"]["tags"]["mlflow_run_id"]
    logged = {Path(a.path).name for a in client.list_artifacts(rid, "environment")}
    assert {"requirements.lock", "installed_packages.txt"} <= logged
    # the manifest-style lineage record
    from thinkalike_ml.registry import registry_lineage
    lin = registry_lineage(run)
    assert lin["matcher"]["version"] == 1 and lin["matcher"]["alias"] == "champion" and lin["matcher"]["champion_before"] is None


def test_a_model_not_shown_fair_is_refused_when_inconclusive_blocks(store, base_run, names, tmp_path):
    from thinkalike_ml.fairness import load_fairness
    mt = load_fairness(base_run)["mitigation"].set_index("model")
    worst = mt.loc["unmitigated", "gated_difference"]
    assert worst > 0.01, "the small run's matcher shows no group difference to test the gate with"
    # at half its observed difference the gate cannot pass (the upper bound is at least the observed difference)
    run = _copy(base_run, tmp_path / "run", fairness_threshold=round(worst / 2, 4), max_calibration_error=1.0, fairness_inconclusive="block")
    models = _register(run)
    m = models["matcher"]
    gates = {g["gate"]: g["status"] for g in m["gates"]}
    assert gates["performance"] == "not applicable" and gates["calibration"] == "passed"
    assert gates["fairness"] == ("failed" if mt.loc["unmitigated", "gate_lower"] > worst / 2 else "inconclusive")
    assert not m["promoted"] and m["alias"] == "challenger" and f"fairness {gates['fairness']}" in m["decision"]
    assert m["tags"]["fairness_verdict"] == gates["fairness"] and m["tags"]["fairness_inconclusive"] == "block"
    client = _client(store)
    assert "champion" not in _aliases(client, names["matcher"])  # no champion: a model not shown to be fair is not served
    assert models["recommender"]["promoted"]  # its gates do not apply to a first ranking model


def test_the_mitigated_matcher_is_a_version_of_its_own_with_its_own_verdict(store, base_run, names, tmp_path):
    from thinkalike_ml.fairness import fairness_inputs, matcher_fairness, mitigation_table, persist_mitigated
    from thinkalike_ml.registry import MITIGATED, load_registry, mitigated_variant
    run = _copy(base_run, tmp_path / "run", fairness_threshold=1.0, max_calibration_error=1.0)
    variant, why = mitigated_variant(run)
    if variant is None:  # the small run's recommended mitigation is not servable (e.g. it needs the attribute when predicting)
        assert why
        # save reweighing (servable: no attribute when predicting) the way the stage saves a recommended mitigation
        params = run.params | {"fairness_mitigations": ["reweighing"]}
        inputs = fairness_inputs(run)
        _, attribute, fitted = mitigation_table(inputs, matcher_fairness(inputs, params), params)
        saved = persist_mitigated(run, {"mitigation": "reweighing"}, fitted, attribute, inputs["features"]["pair_columns"], params)
        assert saved["mitigation"] == "reweighing" and not saved["needs_sensitive_attribute"] and saved["gate"]["verdict"]
    models = _register(run)
    assert not load_registry(run)["summary"]["not_registered"]
    m, u = models[MITIGATED], models["matcher"]
    assert m["version"] == u["version"] + 1 and m["tags"]["matcher_variant"].startswith("mitigated:")
    assert {g["gate"]: g["status"] for g in m["gates"]}["fairness"] == "passed"  # threshold 1.0: every upper bound is within it
    assert sum(r["promoted"] for r in (m, u)) == 1  # one champion per run: the one with the lower fairness upper bound
    from thinkalike_ml.serving import load_served, resolve_model
    src = resolve_model(f"{names['matcher']}@champion", tracking_uri=store[0])
    served = load_served(src)
    assert served.matcher["selected"] == ("mitigated:" + m["variant"] if m["promoted"] else u["descriptor"]["family"])
    # serving a mitigated version (by its number) loads the fairness stage's model, and it scores like it
    mit = load_served(resolve_model(f"{names['matcher']}@{m['version']}", tracking_uri=store[0]))
    assert mit.matcher["selected"] == "mitigated:" + m["variant"] and mit.matcher["model"] is not None
    from thinkalike_ml.fairness import served_mitigated_matcher
    ref = served_mitigated_matcher(run)
    pf = mit.feature_fill.to_frame().T[mit.columns]
    assert np.allclose(mit.matcher["model"].predict_proba(pf), ref["model"].predict_proba(pf))


def _with_saved_reweighing(run):
    "Make sure `run` holds a servable mitigated matcher: save reweighing the way the stage saves a recommended mitigation, unless one is saved."
    from thinkalike_ml.fairness import fairness_inputs, matcher_fairness, mitigation_table, persist_mitigated
    from thinkalike_ml.registry import mitigated_variant
    if mitigated_variant(run)[0] is not None: return
    params = run.params | {"fairness_mitigations": ["reweighing"]}
    inputs = fairness_inputs(run)
    _, attribute, fitted = mitigation_table(inputs, matcher_fairness(inputs, params), params)
    persist_mitigated(run, {"mitigation": "reweighing"}, fitted, attribute, inputs["features"]["pair_columns"], params)


def test_registry_json_records_the_aliases_mlflow_holds_when_both_matcher_candidates_are_refused(store, base_run, names, tmp_path):
    from thinkalike_ml.registry import MITIGATED, load_registry
    # threshold 0 and 'block': neither the matcher nor its mitigated variant can pass the fairness gate, so both are refused
    run = _copy(base_run, tmp_path / "run", fairness_threshold=0.0, max_calibration_error=1.0, fairness_inconclusive="block")
    _with_saved_reweighing(run)
    models = _register(run)
    assert MITIGATED in models and not load_registry(run)["summary"]["not_registered"]
    m, u = models[MITIGATED], models["matcher"]
    assert not m["promoted"] and not u["promoted"]
    held = _aliases(_client(store), names["matcher"])
    assert held == {"challenger": str(held["challenger"])} and held["challenger"] in (str(m["version"]), str(u["version"]))  # one version holds it
    for r in (m, u):  # the summary says exactly what MLflow holds
        assert r["aliases"] == sorted(a for a, v in held.items() if v == str(r["version"]))
        assert r["alias"] == (r["aliases"][0] if r["aliases"] else None)
    assert sorted([m["alias"], u["alias"]], key=str) == [None, "challenger"]
    without = m if m["alias"] is None else u
    assert f"challenger is on version {held['challenger']}" in without["decision"]
    from thinkalike_ml.registry import registry_lineage
    assert {k: r["alias"] for k, r in registry_lineage(run).items()} == {k: r["alias"] for k, r in models.items()}


def test_a_worse_model_is_refused_and_a_better_one_promoted(store, base_run, names, tmp_path):
    good = _copy(base_run, tmp_path / "good", fairness_threshold=1.0, max_calibration_error=1.0)
    bad = _worse_matcher(good, tmp_path / "bad")
    # the good model is champion; the worse one is refused on performance and stays challenger
    assert _register(good)["matcher"]["promoted"]
    m = _register(bad)["matcher"]
    gates = {g["gate"]: g for g in m["gates"]}
    assert gates["performance"]["status"] == "failed" and gates["performance"]["value"] < 0, gates["performance"]
    assert not m["promoted"] and m["alias"] == "challenger"
    assert m["champion_before"]["thinkalike_run"] == good.id
    client = _client(store)
    assert _aliases(client, names["matcher"]) == {"champion": "1", "challenger": "2"}
    # same signature, features, data, family and hyperparameters: a PATCH, compared with the champion
    assert (m["semver"], m["level"]) == ("1.0.1", "PATCH")


def test_a_better_model_replaces_a_worse_champion(store, base_run, names, tmp_path):
    good = _copy(base_run, tmp_path / "good", fairness_threshold=1.0, max_calibration_error=1.0)
    bad = _worse_matcher(good, tmp_path / "bad")
    assert _register(bad)["matcher"]["promoted"]  # first: nothing to beat
    m = _register(good)["matcher"]
    assert {g["gate"]: g["status"] for g in m["gates"]} == {"performance": "passed", "fairness": "passed", "calibration": "passed"}
    assert m["promoted"] and m["champion_before"]["version"] == 1
    client = _client(store)
    assert _aliases(client, names["matcher"]) == {"champion": "2"}
    rec = _register(good)["recommender"]  # the same recommender again: not better beyond noise
    assert {g["gate"]: g["status"] for g in rec["gates"]}["performance"] == "failed" and rec["alias"] == "challenger"


def test_loading_a_registered_model_warns_when_the_environment_differs(store, base_run, names, tmp_path):
    from thinkalike_ml.registry import EnvironmentMismatchWarning, load_registered_model
    run = _copy(base_run, tmp_path / "run", fairness_threshold=1.0, max_calibration_error=1.0)
    _register(run)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentMismatchWarning)
        model, mv = load_registered_model("matcher", "champion", store[0])  # same environment: no warning
    assert hasattr(model, "predict_proba") and mv.tags["semver"] == "1.0.0"
    _client(store).set_model_version_tag(names["matcher"], mv.version, "env.scikit-learn", "0.24.2")
    with pytest.warns(EnvironmentMismatchWarning, match="scikit-learn .* registered with 0.24.2"):
        load_registered_model("matcher", "champion", store[0])


def test_a_missing_evaluation_skips_the_calibration_gate_and_blocks_promotion(store, base_run, names, tmp_path):
    from thinkalike_ml.evaluation import EVALUATION_DIR
    run = _copy(base_run, tmp_path / "run", fairness_threshold=1.0, max_calibration_error=1.0)
    shutil.rmtree(run.path / EVALUATION_DIR)
    m = _register(run)["matcher"]
    assert {g["gate"]: g["status"] for g in m["gates"]}["calibration"] == "skipped"
    assert not m["promoted"] and "calibration skipped" in m["decision"]


def cli(*args, check=None):
    p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""})
    if check is not None: assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def _reproduced(p, reports: Path) -> dict:
    "The reproduction record of the new run a `reproduce` command made."
    new = [l for l in p.stdout.splitlines() if l.startswith("reproduced run")][0].split(" as ")[1].split()[0]
    return json.loads((reports / new / "reproduction.json").read_text())


def _in_process_pipeline(overrides=None, only=None, reports_dir=None, progress=False):
    "`run_pipeline` without papermill: the same stages, executed in this process into a new run with a manifest."
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.runs import RunDirectory, new_manifest
    from thinkalike_ml.stages import execute_stage
    params = resolve_params(overrides=overrides)
    run = RunDirectory.create(params, reports_dir)
    run.write_json("manifest.json", new_manifest(run, only.split(",")))
    for s in only.split(","): execute_stage(run, s, params)
    return run


def test_reproduce_run_compares_dataset_splits_and_metrics_and_explains_a_change(tmp_path, monkeypatch):
    from thinkalike_ml.config import resolve_params
    from thinkalike_ml.registry import format_reproduction, reproduce_run
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = resolve_params(overrides=dict(n_users=120), small=True)
    original = _in_process_pipeline(params, "data,splits,features", tmp_path)
    same = reproduce_run(original, _in_process_pipeline, reports_dir=tmp_path)
    assert same.identical and set(same.table["kind"]) == {"dataset", "splits", "metrics"} and len(same.table) > 10, format_reproduction(same)
    assert same.run.path != original.path and same.run.read_json("reproduction.json")["identical"]
    changed = reproduce_run(original, _in_process_pipeline, {"seed": "7"}, reports_dir=tmp_path)
    assert not changed.identical and changed.params_diff == {"seed": (42, 7)}
    assert changed.causes[0] == "parameters differ: seed 42 -> 7", changed.causes
    assert not changed.table.set_index("kind").loc["dataset", "match"].all()  # the data generator's seed changed the dataset
    loose = reproduce_run(original, _in_process_pipeline, {"n_folds": "4"}, reports_dir=tmp_path)  # splits change, data do not
    t = loose.table.set_index("kind")
    assert t.loc["dataset", "match"].all() and not t.loc["splits", "match"].all() and "n_folds 3 -> 4" in loose.causes[0]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three runs of data, splits and features through papermill
def test_reproduce_gives_identical_results_and_names_a_changed_parameter(tmp_path):
    reports = tmp_path / "reports"
    p = cli("run", "--small", "--until", "features", "-p", "n_users", "120", "--no-progress", "--reports-dir", str(reports), check=0)
    original = Path(p.stdout.strip().splitlines()[-1].split("report: ", 1)[1])
    same = cli("reproduce", original.name, "--reports-dir", str(reports), "--no-progress", check=0)
    assert same.stdout.strip().splitlines()[-1].startswith("identical: all "), same.stdout
    assert "dataset" in same.stdout and "splits" in same.stdout and "metrics" in same.stdout and "DIFFERENT" not in same.stdout
    rec = _reproduced(same, reports)
    assert rec["identical"] and rec["original"] == original.name and rec["compared"] > 10
    changed = cli("reproduce", original.name, "--reports-dir", str(reports), "--no-progress", "-p", "seed", "7", check=1)
    assert "cause: parameters differ: seed 42 -> 7" in changed.stdout, changed.stdout
    assert "DIFFERENT" in changed.stdout and not _reproduced(changed, reports)["identical"]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # two complete small runs: about 8 minutes each on a busy 2-core machine
def test_the_default_small_run_reproduces_exactly(tmp_path):
    reports = tmp_path / "reports"
    p = cli("run", "--small", "--no-progress", "--reports-dir", str(reports), check=0)
    original = Path(p.stdout.strip().splitlines()[-1].split("report: ", 1)[1])
    same = cli("reproduce", original.name, "--reports-dir", str(reports), "--no-progress", "--all", check=0)
    rec = _reproduced(same, reports)
    assert rec["identical"] and rec["differences"] == 0, same.stdout
    assert "matcher.pkl" in same.stdout and "recommender.pkl" in same.stdout  # the model files are compared, and equal
    shown = cli("show", "latest", "--reports-dir", str(reports), check=0).stdout
    assert "thinkalike-matcher version 1 (1.0.0)" in shown and "upstream champion: none" in shown


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts"),
           "--serve-artifacts", "--workers", "1"]
    proc = start_server(cmd, tmp_path / "server.log", env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.mark.slow
def test_registration_against_a_real_tracking_server(mlflow_server, monkeypatch, tmp_path):
    import mlflow
    from thinkalike_ml.registry import MODEL_NAMES, load_registered_model
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("THINKALIKE_PSEUDONYM_KEY", "test-pseudonym-key")
    run = _small_run(tmp_path / "reports", fairness_threshold=1.0, max_calibration_error=1.0)
    models = _register(run)
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    for family, name in MODEL_NAMES.items():
        mv = client.get_model_version_by_alias(name, "champion")
        assert mv.tags["thinkalike_run"] == run.id and mv.tags["semver"] == models[family]["semver"]
    matcher, _ = load_registered_model("matcher", "champion", mlflow_server)  # downloaded through the server
    from thinkalike_ml.features import load_features
    f = load_features(run)
    p = matcher.predict_proba(f["pair_features"][f["pair_columns"]].head(20))
    assert p.shape == (20, 2)
    again = _register(run)  # the same run again: compared with the champion through the server
    assert again["matcher"]["semver"] == "1.0.1" and again["matcher"]["alias"] == "challenger"
