"""One contract over every model kind: the three students, the teacher, the numpy runtime and each export.

Every kind is built in-process from a dozen two-word texts and held to the same vocabulary (DEVELOPERS.md, "The
model vocabulary"): `fit` returns self where the kind trains, `classes_` is an array of the labels, `predict`
returns values of it, `predict_proba` is (texts, classes) with rows summing to 1 and its argmax is `predict`, one
string is a TypeError, and saving and loading again gives the same predictions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinydistill import runtime
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.export import export, load_onnx
from tinydistill.students import BiLSTMConfig, CBoWConfig, CNNConfig, Student
from tinydistill.teacher import Classifier, Teacher

TEXTS = [f"{word} {noun}" for word in ("good", "great", "fine", "bad", "awful", "dull") for noun in ("film", "plot")]
LABELS = ["pos"] * 6 + ["neg"] * 6
PROBE = [*TEXTS, "", "good good dull plot", "words it never saw"]
SMALL = {"cbow": CBoWConfig(embed_dim=8, hidden_dim=8), "cbow-attn": CBoWConfig(embed_dim=8, hidden_dim=8),
         "bilstm": BiLSTMConfig(embed_dim=8, hidden_dim=6),
         "cnn": CNNConfig(embed_dim=8, filters=4)}
QUICK = TrainConfig(epochs=20, min_steps=0, lr=1e-2, batch_size=4)
EXPORTS = ("numpy", "int8", "onnx")
KINDS = [*SMALL, "teacher", "runtime", *(f"export-{f}" for f in EXPORTS)]


def fitted(kind: str, y=LABELS) -> Student:
    student = Student(kind, SMALL[kind], QUICK)
    assert student.fit(TEXTS, y, progress=False) is student  # scikit-learn's fit returns self
    return student


def tiny_teacher(tiny_bert: str) -> Teacher:
    """A teacher on the tiny random BERT: untrained, but a classifier all the same (it has no `fit`)."""
    from transformers import AutoModel, AutoTokenizer

    model = Classifier(AutoModel.from_pretrained(tiny_bert), 2, "cls").eval()
    return Teacher(model, AutoTokenizer.from_pretrained(tiny_bert), ["neg", "pos"], max_length=16)


@pytest.fixture(scope="module")
def models(tiny_bert, tmp_path_factory) -> dict[str, tuple[object, object]]:
    """Each kind as (model, the same model saved and loaded again)."""
    root = tmp_path_factory.mktemp("contract")
    out: dict[str, tuple[object, object]] = {}
    for kind in SMALL:
        student = fitted(kind)
        out[kind] = student, Student.from_pretrained(student.save_pretrained(root / kind))
    teacher = tiny_teacher(tiny_bert)
    out["teacher"] = teacher, Teacher.from_pretrained(teacher.save_pretrained(root / "teacher"))
    out["runtime"] = runtime.load(root / "cbow"), runtime.load(root / "cbow")
    for fmt in EXPORTS:
        if fmt == "onnx" and not _has_onnx():
            continue
        folder = export(root / "cbow", root / f"export-{fmt}", fmt)[0]
        load = load_onnx if fmt == "onnx" else runtime.load
        out[f"export-{fmt}"] = load(folder), load(folder)
    return out


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def get(models, kind):
    if kind not in models:
        pytest.skip(f"{kind}: onnx or onnxruntime is not installed")
    return models[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_predict_returns_labels_and_proba_columns_follow_classes(models, kind):
    model, _ = get(models, kind)
    assert isinstance(model.classes_, np.ndarray) and model.classes_.tolist() == ["neg", "pos"]
    predicted = model.predict(PROBE)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (len(PROBE),)
    assert set(predicted.tolist()) <= {"neg", "pos"}
    proba = model.predict_proba(PROBE)
    assert proba.shape == (len(PROBE), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.classes_[proba.argmax(1)], predicted)
    assert model.predict([]).shape == (0,) and model.predict_proba([]).shape == (0, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_one_string_is_refused(models, kind):
    model, _ = get(models, kind)
    for method in (model.predict, model.predict_proba):
        with pytest.raises(TypeError, match=r"one string: pass \[text\]"):
            method("good film")
    assert model.predict(["good film"]).shape == (1,)  # a list of one text is how to ask


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_the_same_predictions(models, kind):
    model, loaded = get(models, kind)
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(PROBE), model.predict(PROBE))
    np.testing.assert_allclose(loaded.predict_proba(PROBE), model.predict_proba(PROBE), atol=1e-6)


@pytest.mark.parametrize("fmt", ["numpy", "onnx"])
def test_float_exports_predict_as_the_student(models, fmt):
    exported, _ = get(models, f"export-{fmt}")
    student, _ = models["cbow"]
    np.testing.assert_allclose(exported.predict_proba(PROBE), student.predict_proba(PROBE), atol=1e-5)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_fit_takes_string_or_integer_labels(kind):
    stars = fitted(kind, [5] * 6 + [1] * 6)  # labels {1, 5}: two classes, not six
    assert stars.classes_.tolist() == [1, 5] and stars.config_.n_classes == 2
    assert set(stars.predict(PROBE).tolist()) <= {1, 5}
    with pytest.raises(TinyDistillError, match="'meh' is not one of the classes"):
        Student(kind, SMALL[kind], QUICK).fit(TEXTS, ["meh"] + LABELS[1:], ["neg", "pos"], progress=False)
    with pytest.raises(TinyDistillError, match="at least two classes"):
        Student(kind, SMALL[kind], QUICK).fit(TEXTS, ["pos"] * 12, progress=False)
    with pytest.raises(TypeError, match="one string"):
        Student(kind, SMALL[kind], QUICK).fit("good film", ["pos"] * 9, progress=False)


def test_classes_fix_the_column_order_and_keep_unseen_labels():
    student = Student("cbow", SMALL["cbow"], QUICK).fit(TEXTS, LABELS, ["pos", "neutral", "neg"], progress=False)
    assert student.classes_.tolist() == ["pos", "neutral", "neg"] and student.predict_proba(PROBE).shape == (15, 3)


def test_integer_labels_survive_save_load_and_export(tmp_path):
    student = fitted("cbow", [5] * 6 + [1] * 6)
    folder = student.save_pretrained(tmp_path / "stars")
    assert json.loads((folder / "config.json").read_text())["labels"] == [1, 5]  # JSON numbers, as they were fit
    before = student.predict(PROBE)
    for model in (Student.from_pretrained(folder), runtime.load(folder),
                  runtime.load(export(folder, tmp_path / "int8", "int8")[0])):
        assert model.classes_.tolist() == [1, 5] and model.classes_.dtype.kind == "i"
        if not isinstance(model, runtime.Model) or "export" not in model.meta:
            np.testing.assert_array_equal(model.predict(PROBE), before)
    answer = runtime.load(folder).predictions(["good film"])[0]  # JSON output names labels as strings
    assert answer["label"] in ("1", "5") and set(answer["probabilities"]) == {"1", "5"}


def test_student_params_make_sklearn_clone_work():
    clone = pytest.importorskip("sklearn.base").clone
    student = fitted("cnn")
    copy = clone(student)
    assert copy is not student and not hasattr(copy, "classes_")  # the params, not what fit learned
    assert copy.get_params() == student.get_params() == {"model_type": "cnn", "config": SMALL["cnn"],
                                                          "train": QUICK, "vectors": None}
    assert copy.set_params(model_type="cbow", config=SMALL["cbow"]) is copy and copy.model_type == "cbow"
    with pytest.raises(ValueError, match="invalid parameter 'epochs'"):
        copy.set_params(epochs=3)
