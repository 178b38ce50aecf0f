"""Monitoring: the detectors on the generator (quiet without drift, firing with it), hand-computed PSI and KS,
bias emergence, alerts delivered to a local webhook, and clear errors for bad parameters."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from thinkalike_ml import monitoring as M
from thinkalike_ml.config import ParamError, resolve_params


@pytest.fixture(scope="module")
def stored_models():
    "A matcher and a user transformer fitted on one generated dataset, standing in for the stored models."
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from thinkalike_ml.data import age_band, generate_raw
    from thinkalike_ml.features import UserFeatureTransformer, history_embeddings, pair_features
    raw, _ = generate_raw(n_users=1500, n_items=20, interactions_per_user=1.0, seed=1)
    users = raw["users"].assign(age_band=lambda u: age_band(u["age"]))
    # with the history similarity, as the default matcher has it (its fading over the period must not read as drift)
    feats = pair_features(users, raw["suggestions"], history=history_embeddings(raw["interactions"], seed=1))
    assert feats["history_cosine"].abs().sum() > 0
    cols = [c for c in feats.columns if c != "signup_days_apart"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(feats[cols], raw["suggestions"]["accepted"])
    keep = ["user_id", "signup_time", "age_band", "gender", "region", *[c for c in users.columns if c.startswith("value_")], "interests"]
    transformer = UserFeatureTransformer().set_output(transform="pandas").fit(users[keep])
    return {"model": model, "columns": cols}, transformer


def _alarms(matcher, transformer, data_drift, concept_drift, seed=11, n_users=3000, bias_drift=0.0, params=None):
    s = M.MonitorSettings(n_bootstrap=100, exclude=tuple(resolve_params()["drift_exclude_features"]))  # the default exclusions
    sim = M.simulate_period(matcher, seed, data_drift, concept_drift, n_users, params, ("age_band", "gender", "region"), transformer, bias_drift)
    prod = sim["production"]
    windows = M.window_table(sim["start"], prod["timestamp"].max(), s.window_days, s.label_delay_days)
    prod = prod.assign(window=M.assign_windows(prod["timestamp"], windows))
    mon = M.monitor_period(sim["reference"], sim["reference_labelled"], prod, sim["features"], windows, s, sim["attributes"],
                           M.new_user_source(sim["user_rows"], sim["user_columns"], sim["start"], windows))
    return M.window_alarms(windows, mon["alerts"]), mon


def test_no_drift_stays_quiet_and_strong_data_drift_fires(stored_models):
    matcher, transformer = stored_models
    quiet, _ = _alarms(matcher, transformer, 0.0, 0.0)
    assert len(quiet) >= 10
    assert quiet["any"].mean() <= 0.1, quiet
    # with the default histories, history_cosine fades as people without history join: a known trend, not an alarm
    histories = {"interactions_per_user": resolve_params()["interactions_per_user"]}
    quiet, mon = _alarms(matcher, transformer, 0.0, 0.0, params=histories)
    assert quiet["data_drift"].mean() <= 0.1, mon["drift"][mon["drift"]["drifted"]]
    drifted, mon = _alarms(matcher, transformer, 1.0, 0.0)
    assert drifted["data_drift"].mean() >= 0.8, drifted
    top = mon["drift"][mon["drift"]["drifted"]]
    assert top["feature"].str.contains("Innovation|Efficiency|interest=|age_band").any()  # the generator's drifted attributes


def test_concept_drift_degrades_performance_without_data_drift(stored_models):
    matcher, transformer = stored_models
    alarms, mon = _alarms(matcher, transformer, 0.0, 1.0)
    assert alarms["degradation"].mean() >= 0.5, mon["performance"]
    assert alarms["data_drift"].mean() <= 0.2, alarms


def test_psi_and_ks_hand_computed():
    # deciles of 1..10, ten 10s: shares 1.5/15 against 0.5/15 (nine bins) and 10.5/15 (the last)
    assert M.psi(np.arange(1, 11), np.full(10, 10)) == pytest.approx(9 * (-1 / 15) * np.log(1 / 3) + (9 / 15) * np.log(7), abs=1e-12)
    assert M.psi(list("aabb"), list("aaaaaaaabb")) == pytest.approx((8.5 / 11 - 0.5) * np.log(8.5 / 5.5) + (2.5 / 11 - 0.5) * np.log(5 / 11), abs=1e-12)
    assert M.psi(np.arange(100), np.arange(100)) == 0.0
    assert M.drift_test(np.arange(1, 11), np.arange(6, 16))[:2] == ("ks", 0.5)
    a, b = np.random.default_rng(0).normal(size=2000), np.random.default_rng(1).normal(0.2, 1, 50)
    assert M.ks_two_sample(np.sort(a), b) == pytest.approx(tuple(stats.ks_2samp(a, b, method="asymp")), abs=1e-12)
    table = np.array([[40, 35, 25], [10, 30, 10]])
    assert M.chi_square_counts(*table) == pytest.approx(stats.chi2_contingency(table, correction=False)[:2], abs=1e-12)
    assert M.adjust_p([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])


def test_bias_emergence_fires_on_a_widening_gap_only():
    rng = np.random.default_rng(5)
    n = 9000
    f = pd.DataFrame({"accepted": (rng.random(n) < 0.3).astype(int), "g": rng.choice(list("abc"), n), "window": np.repeat([-1, 0, 1], n // 3)})
    f["p"] = np.clip(0.3 + 0.3 * (f["accepted"] - 0.3) + rng.normal(0, 0.15, n), 0, 1)
    f.loc[(f["window"] == 1) & (f["g"] == "c"), "p"] -= 0.2
    t = M.choose_threshold(f["accepted"], f["p"])
    b = M.bias_by_window(f[f["window"] >= 0], f[f["window"] == -1], ["g"], t, 0.05, alpha=0.0125, n_bootstrap=100)
    assert b.groupby("window")["alert"].any().tolist() == [False, True]


def test_bias_that_grows_over_the_production_period_is_caught_late_and_only_on_its_attribute(stored_models):
    matcher, transformer = stored_models
    quiet, mon0 = _alarms(matcher, transformer, 0.0, 0.0)
    assert not quiet["bias_emergence"].any(), mon0["bias"][mon0["bias"]["alert"]]
    grown, mon = _alarms(matcher, transformer, 0.0, 0.0, bias_drift=3.0)  # the group penalty grows from 0 to 3 logits over the period
    fired = grown.loc[grown["bias_emergence"], "window"]
    assert len(fired) >= 2 and fired.min() >= len(grown) // 3, grown  # not at the start, when the bias is still small
    b = mon["bias"][mon["bias"]["alert"]]
    assert set(b["attribute"]) == {"region"} and set(b["metric"]) == {"calibration_difference"}  # the generator's biased attribute
    late = mon["bias"].query("attribute == 'region' and metric == 'calibration_difference'").set_index("window")["widening"]
    assert late.iloc[-3:].mean() > late.iloc[:3].mean() + 0.1


class _Receiver(BaseHTTPRequestHandler):
    received: list = []
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass


def test_alerts_reach_a_local_webhook():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        alerts = [{"kind": "data_drift", "severity": "warning", "window": 3, "where": "value_cosine", "how_much": "PSI 0.3",
                   "since": "2025-11-01", "action": M.ACTIONS["data_drift"]}]
        out = M.deliver_alerts(alerts, f"http://127.0.0.1:{server.server_port}/alerts")
    finally:
        server.shutdown(); thread.join(5)
    assert out == {"logged": 1, "webhook_status": 204}
    assert _Receiver.received[-1] == {"alerts": alerts}


def test_alerts_say_what_where_how_much_since_and_what_to_do():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=2000)}).assign(p=lambda d: 1 / (1 + np.exp(-d["x"])))
    windows = M.window_table(pd.Timestamp("2025-03-01"), pd.Timestamp("2025-03-20"), 7)
    prod = pd.DataFrame({"timestamp": pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.uniform(0, 21, 1500), unit="D"), "x": rng.normal(size=1500)})
    prod["window"] = M.assign_windows(prod["timestamp"], windows)
    prod.loc[prod["window"] >= 1, "x"] += 1.0
    prod = prod.assign(p=lambda d: 1 / (1 + np.exp(-d["x"])), accepted=lambda d: (rng.random(len(d)) < d["p"]).astype(float), held_out=True)
    mon = M.monitor_period(ref, ref.assign(accepted=(rng.random(2000) < ref["p"]).astype(int)), prod, ["x"], windows, M.MonitorSettings(n_bootstrap=50))
    a = [x for x in mon["alerts"] if x["kind"] == "data_drift"]
    assert [x["window"] for x in a] == [1, 2]
    assert set(a[0]) >= {"what", "where", "how_much", "since", "action", "severity"}
    assert a[1]["where"] == "x" and a[1]["since"] == "2025-03-08" and "PSI" in a[1]["how_much"]


def test_bad_monitoring_parameters_give_clear_errors():
    with pytest.raises(ParamError, match="'drift_correction': expected one of 'holm', 'bh'"):
        resolve_params(overrides={"drift_correction": "bonferroni"})
    with pytest.raises(ParamError, match="'monitoring_window_days': 0 is out of range"):
        resolve_params(overrides={"monitoring_window_days": 0})
    with pytest.raises(ParamError, match="'label_delay_days': expected a number"):
        resolve_params(overrides={"label_delay_days": "a week"})
    ok = resolve_params(small=True)
    with pytest.raises(ParamError, match="'label_delay_days'.*no window would ever be judged"):
        M.check_monitoring_params({**ok, "label_delay_days": 1000.0})
    with pytest.raises(ParamError, match="must include a 'users' table"):
        M.check_monitoring_params({**ok, "monitoring_files": {"suggestions": "later.csv"}})
    with pytest.raises(ParamError, match=r"monitoring_files\['users'\]: file 'missing/users.csv' does not exist"):
        M.check_monitoring_params({**ok, "monitoring_files": {"users": "missing/users.csv"}})
    with pytest.raises(ParamError, match="'monitoring_webhook': expected an http"):
        M.check_monitoring_params({**ok, "monitoring_webhook": "file:///tmp/x"})
    with pytest.raises(ParamError, match="'monitoring_start'"):
        M.check_monitoring_params({**ok, "monitoring_start": "soon"})
    with pytest.raises(ParamError, match="'drift_exclude_features': expected a list of feature names"):
        M.check_monitoring_params({**ok, "drift_exclude_features": [1, 2]})


def test_retraining_trigger_needs_consecutive_windows():
    alerts = [{"kind": "degradation", "window": w} for w in (0, 2, 3)]
    assert M.retraining_decision(alerts, 2)["trigger"] and M.retraining_decision(alerts, 2)["since_window"] == 2
    assert not M.retraining_decision(alerts, 3)["trigger"]
    assert M.retraining_decision([], 2, model_age_days=100, interval_days=90)["reason"].startswith("scheduled")


UPSTREAM = ("data", "splits", "features", "models", "evaluation", "fairness", "registry")


def _in_process_pipeline(overrides=None, only=None, reports_dir=None, progress=False):
    "`run_pipeline` without papermill: the same stages executed in this process into a new run with a manifest."
    from thinkalike_ml.runs import RunDirectory, new_manifest
    from thinkalike_ml.stages import execute_stage
    params = resolve_params(overrides=overrides)
    run = RunDirectory.create(params, reports_dir)
    run.write_json("manifest.json", new_manifest(run, only.split(",")))
    for s in only.split(","): execute_stage(run, s, params)
    return run


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory):
    "A temporary SQLite tracking store and model registry, set as MLFLOW_TRACKING_URI for the module."
    from helpers import temporary_registry
    folder = tmp_path_factory.mktemp("monitoring-registry")
    with temporary_registry(folder) as uri: yield uri, folder


@pytest.mark.slow
@pytest.mark.timeout(1800)  # seven stages twice, in process: about 5 minutes on a busy 2-core machine
def test_monitoring_scores_the_champion_and_a_retraining_run_from_an_alert_registers_a_challenger(registry_store):
    import mlflow
    from thinkalike_ml.registry import MODEL_NAMES, load_registry
    from thinkalike_ml.stages import execute_stage
    uri, folder = registry_store
    reports = folder / "reports"
    small = resolve_params(overrides=dict(n_users=300, n_items=40, n_trials=2, n_bootstrap=200, monitoring_seeds=0, data_drift=1.0,
                                          concept_drift=1.0), small=True)
    original = _in_process_pipeline(small, ",".join(UPSTREAM), reports)
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    first = load_registry(original)["summary"]["models"]["matcher"]
    # whatever the gates decided for the first version, production serves it: a human promoted it (the registry's own rule is tested there)
    client.set_registered_model_alias(MODEL_NAMES["matcher"], "champion", str(first["version"]))
    execute_stage(original, "monitoring", original.params)
    mon = M.load_monitoring(original)
    scored = mon["summary"]["scored"]["matcher"]
    assert scored["source"] == "registry champion" and scored["version"] == first["version"] and scored["registered_by_run"] == original.id
    assert mon["alerts"], "drift 1.0 raised no alert to retrain from"
    from thinkalike_ml.tracking import tracking_record
    logged = client.get_run(tracking_record(original)["run_id"]).data.metrics
    assert logged["monitoring.alerts"] == len(mon["alerts"]) and logged["monitoring.matcher_monitored"] == 1.0
    before = {f: len(client.search_model_versions(f"name = '{n}'")) for f, n in MODEL_NAMES.items()}
    new = M.retrain_from_alert(original, _in_process_pipeline, alert=0, reports_dir=reports)
    rec = new.read_json(M.RETRAINING_FILE)
    assert rec["from_run"] == original.id and rec["alert"] == mon["alerts"][0] and rec["reason"].startswith("alert 0")
    for f, name in MODEL_NAMES.items():
        versions = client.search_model_versions(f"name = '{name}'")
        added = len(versions) - before[f]  # the matcher may add two: the model and, when the fairness stage saved one, its mitigated variant
        assert added >= 1 and sum(v.tags.get("thinkalike_run") == new.id for v in versions) == added
        v = client.get_model_version(name, str(rec["registered"][f]["version"]))
        assert v.tags["thinkalike_run"] == new.id and v.tags["retrained_from_run"] == original.id
    # the same data and parameters give a model no better than the champion: the registry keeps it as challenger
    m = rec["registered"]["matcher"]
    # (the challenger alias is on one of the versions this run added: the model, or its mitigated variant when it ranks first)
    held = client.get_model_version_by_alias(MODEL_NAMES["matcher"], "challenger")
    assert held.tags["thinkalike_run"] == new.id and m["alias"] == ("challenger" if str(held.version) == str(m["version"]) else None)  # as MLflow holds it
    assert str(client.get_model_version_by_alias(MODEL_NAMES["matcher"], "champion").version) == str(first["version"])
    assert "registered thinkalike-matcher version" in M.format_retraining(new)
    with pytest.raises(ParamError, match="alert 999: the run has"):
        M.retrain_from_alert(original, _in_process_pipeline, alert=999, reports_dir=reports)


def test_champion_lookup_reads_this_runs_own_file_and_downloads_only_other_models(tmp_path, monkeypatch):
    "One alias lookup per family; a champion whose model_sha256 tag is this run's stored file is not downloaded, any other is."
    import mlflow
    from helpers import temporary_registry
    from thinkalike_ml import registry as R
    from thinkalike_ml.models import MATCHER_MODEL, RECOMMENDER_MODEL
    from thinkalike_ml.runs import RunDirectory
    run = RunDirectory.create(resolve_params(small=True), tmp_path/"reports")
    assert M.registry_champions(run) == ({}, "")  # no registry stage
    with temporary_registry(tmp_path) as uri:
        run.write_json(R.REGISTRY_SUMMARY, {"tracking_uri": uri})
        run.save_object(MATCHER_MODEL, {"model": "m"}); run.save_object(RECOMMENDER_MODEL, "r")
        sums = run.checksums()
        downloads = []
        monkeypatch.setattr(R, "load_registered_model", lambda family, version, u: downloads.append((family, version)) or ("downloaded", None))
        assert M.registry_champions(run) == ({}, uri)  # nothing registered yet
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        for family, name in R.MODEL_NAMES.items():
            client.create_registered_model(name)
            sha = sums[MATCHER_MODEL] if family == "matcher" else "0" * 64  # the recommender's champion is another model
            mv = client.create_model_version(name, source=str(tmp_path/family), tags={"model_sha256": sha})
        assert M.registry_champions(run) == ({}, uri)  # versions, but no champion alias
        for name in R.MODEL_NAMES.values(): client.set_registered_model_alias(name, R.CHAMPION, str(mv.version))
        champions, _ = M.registry_champions(run)
        assert champions["matcher"][0] is None and champions["matcher"][1].version == mv.version
        assert champions["recommender"][0] == "downloaded" and downloads == [("recommender", str(mv.version))]
