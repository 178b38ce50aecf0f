"""The problem definition and the documents stage: documents on a small run quote the run's numbers, every number is
checked against the run (a tampered one is caught), stages that did not run are marked rather than invented, and no
direct identifier or user id reaches a document."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from thinkalike_ml.documents import (DOCUMENTS_DIR, LATER_STAGE_FIELDS, NOT_RUN, SOURCES_FILE, TO_COMPLETE, check_documents,
                                     load_documents, write_documents)
from thinkalike_ml.runs import ArtifactError, RunDirectory
from thinkalike_ml.stages import STAGES, execute_stage, open_stage

DOCS = ("problem_definition", "model_card_matcher", "model_card_recommender", "datasheet", "impact_assessment_matcher",
        "impact_assessment_recommender", "handoff")


@pytest.fixture(scope="module")
def documents_run():
    """The documents stage on the small profile's cached upstream (every stage before it)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, params = open_stage(None, "documents")
    metrics = execute_stage(run, "documents", params)
    yield run, params, metrics
    mp.undo()


def _copy(run, tmp_path) -> RunDirectory:
    return RunDirectory(shutil.copytree(run.path, tmp_path/"run", ignore=shutil.ignore_patterns("mlruns")))


def _doc(run, name, kind="md") -> str:
    return run.file(f"{DOCUMENTS_DIR}/{name}.{kind}").read_text(encoding="utf-8")


def test_every_document_is_written_and_quotes_the_measured_numbers(documents_run):
    run, params, m = documents_run
    index = load_documents(run)
    assert [d["name"] for d in index["documents"]] == list(DOCS) and m["documents"] == len(DOCS)
    for name in DOCS:
        assert "<html" in _doc(run, name, "html") and _doc(run, name).startswith("# ")
    ev = run.metrics()["evaluation"]
    card = _doc(run, "model_card_matcher")
    for k in ("matcher_test_roc_auc", "matcher_test_roc_auc_ci_low", "matcher_test_roc_auc_ci_high"):
        assert f"{ev[k]:.3f}" in card, k
    assert f"{run.metrics()['evaluation']['recommender_test_ndcg']:.3f}" in _doc(run, "model_card_recommender")
    assert f"{run.metrics()['data']['n_users']:,}" in _doc(run, "datasheet")
    problem = _doc(run, "problem_definition")
    assert f"at least {params['matcher_min_roc_auc']:.3g}" in problem and "Did we meet the success criteria?" in problem
    rows = {r["name"]: r for r in index["success_criteria"]}
    auc = rows["matcher_roc_auc"]
    assert auc["measured"] == f"{ev['matcher_test_roc_auc']:.3f}"
    assert auc["verdict"] == ("met" if ev["matcher_test_roc_auc"] >= params["matcher_min_roc_auc"] else "not met")
    assert m["criteria_met"] + m["criteria_not_met"] + m["criteria_not_measured"] == len(rows)
    assert json.loads(_doc(run, "model_card_matcher", "json"))["quantitative_analysis"]["performance_metrics"]
    assert m["numbers_checked"] > 300 and check_documents(run) == []


def test_a_number_changed_in_a_document_is_caught(documents_run, tmp_path):
    run, _, _ = documents_run
    copy = _copy(run, tmp_path)
    auc = f"{run.metrics()['evaluation']['matcher_test_roc_auc']:.3f}"
    wrong = f"{float(auc) + 0.1:.3f}"
    for kind in ("md", "html"):
        p = copy.file(f"{DOCUMENTS_DIR}/model_card_matcher.{kind}")
        p.write_text(p.read_text().replace(auc, wrong, 1))
    problems = check_documents(copy)
    assert any(f"model_card_matcher.md: the number '{wrong}' has no recorded source" in p for p in problems), problems
    assert any(f"model_card_matcher.html: the number '{wrong}' has no recorded source" in p for p in problems), problems


def test_a_typed_number_and_a_forged_ledger_are_caught(documents_run, tmp_path):
    run, _, _ = documents_run
    copy = _copy(run, tmp_path)
    p = copy.file(f"{DOCUMENTS_DIR}/handoff.md")
    p.write_text(p.read_text() + "\n95% of predictions under 20 ms.\n")
    problems = check_documents(copy)
    assert "handoff.md: the number '95%' has no recorded source" in problems and "handoff.md: the number '20' has no recorded source" in problems
    # changing a number in the document and in its ledger alike is caught when the source is read again
    copy2 = RunDirectory(shutil.copytree(run.path, tmp_path/"run2", ignore=shutil.ignore_patterns("mlruns")))
    ledger = copy2.read_json(SOURCES_FILE)
    entry = next(e for e in ledger["model_card_matcher"] if e["source"] == ["metric", "evaluation", "matcher_test_roc_auc"])
    original, forged = entry["text"], f"{float(entry['text']) + 0.1:.3f}"
    for kind in ("md", "html"):
        f = copy2.file(f"{DOCUMENTS_DIR}/model_card_matcher.{kind}")
        f.write_text(f.read_text().replace(original, forged))
    for e in ledger["model_card_matcher"]:
        if e["text"] == original: e["text"] = forged
    copy2.write_json(SOURCES_FILE, ledger)
    problems = check_documents(copy2)
    assert any("['metric', 'evaluation', 'matcher_test_roc_auc']" in p and f"gives '{original}'" in p for p in problems), problems


def test_stages_that_did_not_run_are_marked_not_invented(documents_run, tmp_path):
    run, _, _ = documents_run
    # every later stage (registry, serving, monitoring) this run did not run is marked in the handoff
    handoff = _doc(run, "handoff")
    for stage in {s for s, _ in LATER_STAGE_FIELDS.values()} - set(run.metrics()):
        assert NOT_RUN.format(stage=stage) in handoff
    assert TO_COMPLETE in _doc(run, "model_card_matcher")
    # a declared stage left out of the run: its fields are marked, none of its numbers appear, the checker agrees
    copy = _copy(run, tmp_path)
    without = [s for s in STAGES if s.name != "fairness"]
    index = write_documents(copy, without)
    card = _doc(copy, "model_card_matcher")
    assert NOT_RUN.format(stage="fairness") in card
    fair = run.metrics()["fairness"]
    assert f"{fair['matcher_red_lights']:,.0f}" not in re.findall(r"red lights: (\S+)", card)
    assert "traffic_light" not in json.dumps(copy.read_json(SOURCES_FILE))
    rows = {r["name"]: r for r in index["success_criteria"]}
    assert rows["matcher_demographic_parity"]["verdict"] == "not measured"
    assert rows["matcher_demographic_parity"]["measured"] == NOT_RUN.format(stage="fairness")
    assert any(m["reason"] == NOT_RUN.format(stage="fairness") for m in index["missing"]["model_card_matcher"])
    assert check_documents(copy, without) == []


def test_no_direct_identifier_or_user_id_reaches_a_document(documents_run):
    from thinkalike_ml.data import IDENTIFIER_COLUMNS, collect_raw, load_dataset
    run, params, _ = documents_run
    raw, _ = collect_raw(params)
    users = raw["users"]
    direct = {str(v) for c in IDENTIFIER_COLUMNS if c in users for v in users[c].dropna()}
    assert len(direct) > 100  # the generator does write identifiers, which the data stage removes
    ids = set(load_dataset(run)["users"]["user_id"].astype(str)) | set(users["user_id"].astype(str))
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(run.file(DOCUMENTS_DIR).iterdir()))
    words = set(re.findall(r"[\w.@+-]+", text))
    assert not [v for v in direct if v in text][:5]
    assert not (ids - {""}) & words


def test_the_index_page_links_the_documents_and_ends_with_the_success_criteria(documents_run):
    from thinkalike_ml.reports import run_index_html
    run, params, _ = documents_run
    page = run_index_html(run.path, {"run_id": run.id, "status": "succeeded", "stages": []}, run.metrics(), params, [])
    for name in DOCS: assert f'href="documents/{name}.html"' in page
    assert page.rindex("<h2>") == page.index("<h2>Did we meet the success criteria?</h2>")
    auc = next(r for r in load_documents(run)["success_criteria"] if r["name"] == "matcher_roc_auc")
    assert f"<strong>{auc['verdict']}</strong>" in page and auc["measured"] in page


def test_the_problem_definition_fixes_the_thresholds_and_is_verified_on_load(documents_run, tmp_path):
    from thinkalike_ml.problem import SUCCESS_CRITERIA, load_problem
    run, params, _ = documents_run
    p = load_problem(run)
    assert {c["name"]: c["threshold"] for c in p["criteria"]} == {c.name: params[c.param] for c in SUCCESS_CRITERIA}
    copy = _copy(run, tmp_path)
    f = copy.file("artifacts/problem/problem.json")
    f.write_text(f.read_text().replace(f'"threshold": {params["matcher_min_roc_auc"]}', '"threshold": 0.5'))
    with pytest.raises(ArtifactError, match="changed after it was written"): load_problem(copy)
