"""
RemoteClassifier and DFME against a real MLServer (``mlserver start DIR``, the Open Inference Protocol v2), with a
custom runtime serving a small PyTorch model and counting the inputs it answered in a file. Skipped where MLServer
is not installed (``tox -e serving`` installs it).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlserver", reason="MLServer is not installed: pip install mlserver (CI: tox -e serving)")
torch = pytest.importorskip("torch", reason="the MLServer runtime of these tests serves a PyTorch model")

from _mlserver import MLServerProcess  # noqa: E402

from art_ext.estimators.classification import LedgerClassifier, RemoteClassifier  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def mlserver(framework, tmp_path_factory):
    from art_ext.models import input_shape_of

    server = MLServerProcess(tmp_path_factory.mktemp("mlserver"), input_shape_of("digits_cnn", framework))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_from_url_reads_mlserver_metadata_and_answers_match_the_model(mlserver, framework):
    from art_ext.models import input_shape_of

    shape = input_shape_of("digits_cnn", framework)
    before = mlserver.answered()
    clf = RemoteClassifier.from_url(mlserver.url + "/v2/models/victim", batch_size=8, concurrency=2)
    assert (clf.protocol, clf.input_name, clf.payload, clf.input_shape, clf.nb_classes) == (
        "v2",
        "x",
        "json",
        shape,
        10,
    )
    x = np.random.default_rng(0).uniform(0, 1, (20, *shape)).astype(np.float32)
    expected = mlserver.net(torch.from_numpy(x.reshape(20, -1))).detach().numpy()
    np.testing.assert_allclose(clf.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert mlserver.answered() - before == clf.queries_answered == 20 and clf.requests_sent == 3


def test_dfme_with_an_exact_budget_against_mlserver(mlserver, framework, tmp_path):
    """The inputs MLServer answered (counted in its runtime) equal DFME's count and the budget, through a ledger."""
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import build_generator, build_model, input_shape_of, make_classifier, make_generator

    shape = input_shape_of("digits_cnn", framework)
    budget = 32 * 4 * 3
    before = mlserver.answered()
    remote = RemoteClassifier.from_url(
        mlserver.url + "/v2/models/victim", clip_values=(0.0, 1.0), batch_size=16, concurrency=2
    )
    victim = LedgerClassifier(remote, str(tmp_path / "ledger"), max_queries=budget)
    attack = DataFreeModelExtraction(
        victim,
        make_generator(build_generator("generator_8x8", framework, seed=2)),
        max_queries=budget,
        batch_size=32,
        n_student_steps=2,
        random_state=0,
        verbose=False,
    )
    student = make_classifier(build_model("digits_cnn", framework, seed=1), input_shape=shape)
    attack.extract(thieved_classifier=student)
    victim.ledger.close()
    served = mlserver.answered() - before
    assert attack.queries_used == budget == served == remote.queries_answered == remote.queries_sent
    assert victim.queries_used == budget and remote.retries == 0


def test_audit_of_an_mlserver_endpoint_within_max_queries(mlserver, framework, digits, tmp_path):
    """`art-ext audit URL`: what MLServer answered (counted in its runtime) is what results.json says was sent."""
    import json

    from art_ext.cli.main import main

    _, (x_test, y_test), _, _ = digits
    np.savez(tmp_path / "digits.npz", x=x_test, y=y_test)
    before = mlserver.answered()
    args = ["audit", mlserver.url + "/v2/models/victim", "--data", str(tmp_path / "digits.npz"), "--norm", "inf"]
    args += ["--sample-size", "40", "--max-queries", "6000", "--framework", framework, "--out", str(tmp_path / "a")]
    assert main(args + ["--quiet"]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["queries"] == {"sent": mlserver.answered() - before, "budget": 6000}
    status = {k: s["status"] for k, s in results["sections"].items()}
    assert status["clean"] == status["extraction"] == "done" and status["certification"] == "skipped"
