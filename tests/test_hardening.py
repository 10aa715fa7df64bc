"""Bad inputs and options refused with a clear ValueError before anything is spent (issue: hardening)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from art_ext.models import build_model, build_text_model, input_shape_of, make_classifier, make_text_classifier
from art_ext.utils.checks import check_clip_values, check_flag, check_random_state


@pytest.fixture(scope="module")
def mlp(framework):
    return make_classifier(build_model("digits_mlp", framework, seed=0), input_shape_of("digits_mlp", framework))


@pytest.fixture(scope="module")
def text_clf(framework):
    model = build_text_model("text_cnn", framework, vocab_size=20, embedding_dim=8, seed=0, filters=4)
    return make_text_classifier(model, max_len=6)


def _x(framework, n=8, seed=0):
    return np.random.default_rng(seed).random((n,) + input_shape_of("digits_mlp", framework)).astype(np.float32)


# ---------------------------------------------------------------- shared checks
def test_check_clip_values_refuses_uint8_range():
    check_clip_values(np.linspace(0, 1, 10), (0.0, 1.0))
    check_clip_values(np.array([1.0 + 1e-7]), (0.0, 1.0))  # float rounding is tolerated
    with pytest.raises(ValueError, match=r"clip_values \[0, 1\].*255"):
        check_clip_values(np.array([0.0, 255.0]), (0.0, 1.0))
    check_clip_values(np.array([0.0, 255.0]), None)


def test_check_flag_and_random_state_name_the_argument():
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="`verbose`"):
            check_flag(bad, "verbose")
    for bad in ("0", 1.5, True, -1):
        with pytest.raises(ValueError, match="`random_state`"):
            check_random_state(bad)
    check_random_state(None)
    check_random_state(3)
    with pytest.raises(TypeError):  # also a TypeError, for callers that catch that
        check_flag("yes", "verbose")


# ---------------------------------------------------------------- models
@pytest.mark.parametrize(
    "kwargs, match", [({"optimizer": "rmsprop"}, "optimizer"), ({"preprocessing": (0, 0)}, "divisor")]
)
def test_make_classifier_refuses_unknown_optimizer_and_zero_divisor(framework, kwargs, match):
    model = build_model("digits_mlp", framework, seed=0)
    with pytest.raises(ValueError, match=match):
        make_classifier(model, input_shape_of("digits_mlp", framework), **kwargs)


def test_input_shape_of(framework):
    assert input_shape_of("lenet5", framework) == ((1, 28, 28) if framework == "pytorch" else (28, 28, 1))
    with pytest.raises(ValueError, match="Unknown architecture"):
        input_shape_of("resnet", framework)


# ---------------------------------------------------------------- text classifiers
def test_text_predict_refuses_bad_token_ids(text_clf):
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 19, 7, 0, 0]])
    assert text_clf.predict(ids).shape == (2, 2)
    with pytest.raises(ValueError, match=r"outside \[0, 20\)"):
        text_clf.predict(ids + 15)
    with pytest.raises(ValueError, match=r"outside \[0, 20\)"):
        text_clf.predict(-ids)
    with pytest.raises(ValueError, match="non-integral"):
        text_clf.predict(ids + 0.5)
    with pytest.raises(ValueError, match="max_len=6"):
        text_clf.predict(ids[:, :4])
    with pytest.raises(ValueError, match="numeric"):
        text_clf.predict(np.array([["a"] * 6]))


def test_text_classifier_options_checked(framework):
    model = build_text_model("text_cnn", framework, vocab_size=20, embedding_dim=8, seed=0, filters=4)
    with pytest.raises(ValueError, match="nb_classes"):
        make_text_classifier(model, max_len=6, nb_classes=1)
    clf = make_text_classifier(model, max_len=6)
    with pytest.raises(ValueError, match="random_state"):
        clf.adversarial_embeddings(np.ones((2, 6), dtype=np.int64), 0.1, random_state="0")


# ---------------------------------------------------------------- transferability
def test_transferability_checks_x_shape_and_range(framework, mlp):
    from art.attacks.evasion import FastGradientMethod

    from art_ext.evaluations import transferability_matrix

    x, y = _x(framework), np.arange(8) % 10
    with pytest.raises(ValueError, match="sample shape"):
        transferability_matrix({"a": mlp}, lambda c: FastGradientMethod(c, eps=0.1), x.reshape(8, -1), y, verbose=False)
    with pytest.raises(ValueError, match="clip_values"):
        transferability_matrix({"a": mlp}, lambda c: FastGradientMethod(c, eps=0.1), x * 255, y, verbose=False)
    with pytest.raises(ValueError, match="use_labels"):
        transferability_matrix({"a": mlp}, lambda c: FastGradientMethod(c, eps=0.1), x, y, use_labels=1)
    result = transferability_matrix({"a": mlp}, lambda c: FastGradientMethod(c, eps=0.1), x, y, verbose=False)
    d = result.to_dict()
    assert d["names"] == ["a"] and len(d["error_rates"]) == 1 and d["nb_samples"] == 8


# ---------------------------------------------------------------- gradient-masking analysis
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"random_state": "0"}, "random_state"),
        ({"random_state": -1}, "random_state"),
        ({"verbose": "no"}, "verbose"),
        ({"catch_interrupt": 0}, "catch_interrupt"),
        ({"output": "softmax"}, "output"),
        ({"norm": 1}, "norm"),
        ({"attacks": ["fgsm"]}, "attacks"),
        ({"eps": "0.1"}, "eps"),
        ({"eps": "5"}, "eps"),
    ],
)
def test_gradient_masking_options_checked_at_construction(mlp, kwargs, name):
    from art_ext.evaluations import GradientMaskingAnalysis

    with pytest.raises(ValueError, match=f"`{name}`"):
        GradientMaskingAnalysis(mlp, **kwargs)


def test_gradient_masking_refuses_out_of_range_inputs_and_analyze_is_deprecated(framework, mlp):
    from art_ext.evaluations import GradientMaskingAnalysis

    analysis = GradientMaskingAnalysis(mlp, eps=0.1, attacks=["fgsm_ce"], verbose=False, random_state=0)
    x, y = _x(framework), np.arange(8) % 10
    with pytest.raises(ValueError, match="clip_values"):
        analysis.analyse(x * 255, y)
    with pytest.raises(ValueError, match="sample shape"):
        analysis.analyse(x.reshape(8, -1), y)
    with pytest.warns(DeprecationWarning, match="analyse"):
        try:
            analysis.analyze(x, y)
        except ValueError:  # an untrained model may misclassify everything
            pass


def test_logit_margin_attack_is_an_art_evasion_attack(framework, mlp):
    from art.attacks.attack import EvasionAttack

    from art_ext.attacks.evasion import LogitMarginAttack

    attack = LogitMarginAttack(mlp, eps=0.1, max_iter=3)
    assert isinstance(attack, EvasionAttack)
    attack.set_params(eps=0.2)
    assert attack.eps == 0.2
    with pytest.raises(ValueError):
        attack.set_params(max_iter=0)
    attack.set_params(max_iter=3)
    x = _x(framework)
    x_adv = attack.generate(x)
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # It moves the margin towards misclassification.
    z0, z1 = mlp.predict(x), mlp.predict(x_adv)
    y = z0.argmax(1)
    rows = np.arange(len(x))

    def margin(z):
        other = np.where(np.eye(10, dtype=bool)[y], -np.inf, z).max(1)
        return other - z[rows, y]

    assert np.all(margin(z1) > margin(z0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="norm"):
            LogitMarginAttack(mlp, norm="l1")


def test_gradient_masking_interrupt_is_visible_and_optional(digits_mlp_classifier, digits, monkeypatch):
    from art_ext.evaluations import GradientMaskingAnalysis

    _, (x_test, y_test), _, _ = digits
    settings = dict(eps=0.1, attacks=["fgsm_ce", "noise"], max_samples=20, verbose=False, random_state=0)
    analysis = GradientMaskingAnalysis(digits_mlp_classifier, **settings)
    original = analysis.run_attack

    def interrupted(key, *args, **kwargs):
        if key == "noise":
            raise KeyboardInterrupt
        return original(key, *args, **kwargs)

    monkeypatch.setattr(analysis, "run_attack", interrupted)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        report = analysis.analyse(x_test, y_test)
    assert report.interrupted and list(report.success) == ["fgsm_ce"] and report.to_dict()["interrupted"]
    assert "Interrupted" in report.to_markdown()

    strict = GradientMaskingAnalysis(digits_mlp_classifier, catch_interrupt=False, **settings)
    monkeypatch.setattr(strict, "run_attack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        strict.analyse(x_test, y_test)


def test_set_seed_checks_its_seed():
    from art_ext.utils.seed import set_seed

    with pytest.raises(ValueError, match="`seed`"):
        set_seed("0")
    set_seed(None)
