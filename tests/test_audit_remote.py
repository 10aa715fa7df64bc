"""
The audit of a model through its answers only: ``art-ext audit URL`` against a served model, and ``max_queries`` on
an in-process black box. Every query is counted where it is answered, and the budget is never passed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from art_ext.estimators.serving import serve_in_thread
from art_ext.evaluations import audit

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def endpoint(digits_cnn_classifier):
    srv = serve_in_thread(digits_cnn_classifier, max_batch=128, model_name="digits")
    yield srv
    srv.shutdown()
    srv.server_close()


def _audit_url(url, data, out, max_queries, *extra):
    from art_ext.cli.main import main

    args = ["audit", url, "--data", data, "--sample-size", "60", "--norm", "inf", "--out", str(out), "--quiet"]
    return main(args + ["--max-queries", str(max_queries), *extra])


def test_audit_of_an_endpoint_stays_within_max_queries_and_counts_what_the_server_answered(
    framework, endpoint, digits_npz, tmp_path
):
    rc = _audit_url(endpoint.url + "/v2/models/digits", digits_npz, tmp_path, 9000, "--framework", framework)
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())
    sections = results["sections"]
    # The server's own count is the audit's, and within the budget.
    assert results["queries"] == {"sent": endpoint.answered, "budget": 9000}
    assert 0 < endpoint.answered <= 9000
    setup = endpoint.answered - sum(s["queries"] for s in sections.values())
    assert 0 < setup <= 64 + 5 + 2 * 45  # output detection and the cost model's probe, nothing else
    # What needs only answers ran; what needs the weights says so.
    assert {k: s["status"] for k, s in sections.items()} == {
        "clean": "done",
        "robustness": "done",
        "masking": "skipped",
        "certification": "skipped",
        "extraction": "done",
    }
    assert sections["clean"]["queries"] == 60 and sections["masking"]["queries"] == 0
    for key in ("masking", "certification"):
        assert "black box" in sections[key]["reason"] and "art-ext audit MODEL" in sections[key]["reason"]
    assert sections["robustness"]["results"]["attacks_ran"] == ["square"]  # 8x8 images: the black-box Square
    extraction = sections["extraction"]["results"]
    budget = extraction["budget"]
    assert all(v["queries_used"] <= budget for v in extraction["victims"].values())
    assert sections["extraction"]["queries"] <= 3 * budget + 2 * 7 * 128
    assert "RemoteClassifier at" in sections["masking"]["reason"]


def test_max_queries_audits_an_in_process_black_box_of_flat_features(digits_mlp_classifier, digits):
    """Flat vectors: HopSkipJump is the black-box attack; the answers counted outside equal the report's."""
    from art.estimators.classification import BlackBoxClassifier

    _, (x_test, y_test), _, _ = digits
    shape = tuple(digits_mlp_classifier.input_shape)
    answered = []

    def predict(x):
        answered.append(len(x))
        return digits_mlp_classifier.predict(np.asarray(x, np.float32).reshape((-1, *shape)))

    flat = BlackBoxClassifier(predict, (int(np.prod(shape)),), 10, clip_values=(0.0, 1.0))
    x = x_test[:40].reshape(40, -1)
    report = audit(flat, x, y_test[:40], norms=["inf"], max_queries=6000, extraction_queries=448, verbose=False)
    assert report.queries == {"sent": sum(answered), "budget": 6000} and sum(answered) <= 6000
    status = {s.key: s.status for s in report.sections}
    assert status["clean"] == status["extraction"] == "done", {s.key: s.reason for s in report.sections}
    robustness = report.section("robustness")
    if robustness.status == "done":
        assert "hopskipjump" in robustness.results["attacks_ran"]
    else:  # its smallest run does not fit its share: said in one line, nothing sent by it
        assert robustness.status == "skipped" and "--max-queries" in robustness.reason and robustness.queries == 0
    assert report.section("extraction").results["victims"]["none"]["queries_used"] <= 448


def test_a_small_query_budget_is_refused_before_anything_is_sent(endpoint, digits_npz, tmp_path, capsys):
    rc = _audit_url(endpoint.url + "/v2/models/digits", digits_npz, tmp_path, 100)
    err = capsys.readouterr().err
    assert rc == 2 and "max_queries" in err and "one query per audited input" in err and "Traceback" not in err
    assert endpoint.answered == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "w.pt"], "--weights describe a saved model"),
        (["--max-queries", "0"], "--max-queries must be a positive integer"),
        (["--header", "no colon"], "--header must be 'Name: value'"),
        (["--clip-values", "1,0"], "--clip-values must be two finite numbers MIN < MAX"),
    ],
)
def test_bad_endpoint_options_get_one_line(endpoint, digits_npz, tmp_path, capsys, extra, message):
    from art_ext.cli.main import main

    args = ["audit", endpoint.url + "/v2/models/digits", "--data", digits_npz, "--out", str(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert endpoint.answered == 0


def test_unreachable_endpoint_and_wrong_data_shape_get_one_line(endpoint, tmp_path, capsys, digits):
    from art_ext.cli.main import main

    assert main(["audit", "http://127.0.0.1:1/v2/models/x", "--data", "digits", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("art-ext audit: error: MODEL http://127.0.0.1:1/v2/models/x")
    _, (x_test, y_test), _, _ = digits
    np.savez(tmp_path / "flat.npz", x=x_test.reshape(len(x_test), -1), y=y_test)
    assert (
        main(
            ["audit", endpoint.url + "/v2/models/digits", "--data", str(tmp_path / "flat.npz"), "--out", str(tmp_path)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "holds samples of shape (64,), the endpoint takes" in err
    assert endpoint.answered == 0


def test_query_budget_refuses_a_call_before_it_is_sent_and_counts_nothing_of_it():
    from art_ext.evaluations.audit import SectionSkipped
    from art_ext.evaluations.audit.queries import QueryBudget, QueryBudgetExhausted

    budget = QueryBudget(100)
    budget.spend(60)
    with budget.section(30):
        budget.spend(30)
        with pytest.raises(QueryBudgetExhausted, match="its share of the query budget ran out"):
            budget.spend(1)
    assert budget.used == 90 and budget.left == 10
    with pytest.raises(QueryBudgetExhausted, match="the query budget ran out") as caught:
        budget.spend(11)
    assert isinstance(caught.value, SectionSkipped) and budget.used == 90
    budget.spend(10)
    assert budget.left == 0
    unlimited = QueryBudget(None)
    with unlimited.section(5):
        unlimited.spend(10**6)
    assert unlimited.used == 10**6 and unlimited.left is None
