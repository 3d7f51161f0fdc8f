"""The numpy runtime against the torch students, for every student type: same probabilities, same tokens,
int8 and ONNX exports that agree, a runtime that imports without torch, and one-line errors for bad folders."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill import forwards, runtime, words
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.export import export, onnx_logits
from tinydistill.students import BiLSTMConfig, CBoWConfig, CNNConfig, Student

CONFIGS = {
    "cbow": CBoWConfig(vocab_size=50, embed_dim=8, hidden_dim=8, max_length=12),
    "cbow-attn": CBoWConfig(vocab_size=50, embed_dim=8, hidden_dim=8, max_length=12),
    "bilstm": BiLSTMConfig(vocab_size=50, embed_dim=8, hidden_dim=6, max_length=12),
    # windows out of order, so the runtime's regrouping by width is exercised
    "cnn": CNNConfig(vocab_size=50, embed_dim=8, filters=4, windows=(4, 2, 3), max_length=12),
}
LABELS = ["neg", "neutral", "pos"]
TEMPERATURE = 2.5


def probe_texts(n: int = 200, seed: int = 1) -> list[str]:
    """Toy sentences of every length, plus the edge cases: empty, past max_length, unknown, marks, non-ASCII."""
    rng = random.Random(seed)
    texts, _ = toy_texts(2 * (n - 8), seed)
    # 0 to 13 words: shorter than the widest window, up to past max_length (12)
    texts = [" ".join(f"{a} {b}".split()[: rng.randint(0, 13)]) for a, b in zip(texts[::2], texts[1::2], strict=True)]
    return texts + ["", "   ", "good " * 40, "GOOD film, isn't it?! (really) 's", "zzz qqq", "film", "a_b--c",
                    "très bon film, naïve plot \u00e9\u0301"]


@pytest.fixture(scope="module")
def students(tmp_path_factory) -> dict[str, tuple[Student, object]]:
    """One tiny student of each type, fitted on random 3-class logits, given a calibration temperature other
    than 1 (every probability below goes through it) and saved: (student, folder)."""
    texts, _ = toy_texts(40)
    logits = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32) * 3
    out = {}
    for kind, config in CONFIGS.items():
        student = Student(kind, config=config, train=TrainConfig(epochs=2, min_steps=5)).fit(
            texts, logits, LABELS, progress=False)
        student.temperature_ = TEMPERATURE
        out[kind] = (student, student.save_pretrained(tmp_path_factory.mktemp("students") / kind))
    return out


def test_attention_cbow_with_far_apart_word_scores(students, tmp_path):
    """The runtime's per-word weight table shifts every score by the vocabulary's highest; where the scores span
    too far for that in float32, each text is shifted by its own highest instead, with the same results."""
    import torch

    student, folder = students["cbow-attn"]
    assert runtime.load(folder).forward.table is not None  # trained scores are close together
    wide = Student.from_pretrained(folder)
    with torch.no_grad():
        wide.module_.score.weight.copy_(torch.linspace(-40, 40, CONFIGS["cbow-attn"].embed_dim))
    model = runtime.load(wide.save_pretrained(tmp_path / "wide"))
    assert model.forward.table is None
    texts = probe_texts()
    np.testing.assert_allclose(model.predict_proba(texts), wide.predict_proba(texts), atol=1e-5)
    np.testing.assert_allclose(np.concatenate([model.predict_proba([t]) for t in texts]),
                               model.predict_proba(texts), atol=1e-6)


@pytest.mark.parametrize("kind", ["cbow", "cbow-attn"])
def test_word_sums_with_and_without_scipy(kind, students, monkeypatch):
    """A CBoW's word rows are summed by scipy's sparse product from `SPARSE_FROM` texts a call, by a numpy
    gather below that and wherever scipy is missing: the same logits every way."""
    model = runtime.load(students[kind][1])
    texts = probe_texts()
    assert forwards._csr_matrix() is not None and len(texts) >= forwards.SPARSE_FROM
    sparse = model.logits(texts)
    monkeypatch.setattr(forwards, "_csr_matrix", lambda: None)
    np.testing.assert_allclose(model.logits(texts), sparse, atol=1e-6)
    monkeypatch.undo()
    monkeypatch.setattr(forwards, "SPARSE_FROM", 10**9)
    np.testing.assert_allclose(model.logits(texts), sparse, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_runtime_matches_torch(kind, students, tmp_path):
    student, folder = students[kind]
    model = runtime.load(folder)
    texts = probe_texts()
    assert model.classes_.tolist() == LABELS and model.model_type == kind and model.temperature == TEMPERATURE
    proba = model.predict_proba(texts)
    assert proba.shape == (len(texts), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, student.predict_proba(texts), atol=1e-5)
    np.testing.assert_allclose(proba, runtime.softmax(student.logits(texts) / TEMPERATURE), atol=1e-5)
    assert Student.from_pretrained(folder).temperature_ == TEMPERATURE
    assert model.predict(texts).tolist() == [LABELS[i] for i in student.predict_proba(texts).argmax(1)]
    # a text's result does not depend on its batch, nor on how batches are cut
    one_by_one = np.concatenate([model.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(proba, one_by_one, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(texts, batch_size=7), proba, atol=1e-6)
    assert model.predict_proba([]).shape == (0, 3)

    numpy_export = export(folder, tmp_path / "numpy", "numpy")[0]
    np.testing.assert_array_equal(runtime.load(numpy_export).predict_proba(texts), proba)
    assert json.loads((numpy_export / "config.json").read_text())["temperature"] == TEMPERATURE
    assert Student.from_pretrained(numpy_export).model_type == kind  # torch reads a numpy export too


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_int8_export_agrees(kind, students, tmp_path):
    student, folder = students[kind]
    out = export(folder, tmp_path / "int8", "int8")[0]
    meta = json.loads((out / "config.json").read_text())
    assert meta["export"]["format"] == "int8" and meta["temperature"] == TEMPERATURE
    from safetensors.numpy import load_file

    stored = load_file(str(out / "model.safetensors"))
    assert stored["embedding.weight"].dtype == np.int8 and "embedding.weight.scale" in stored
    texts = probe_texts(400, seed=2)
    full, small = runtime.load(folder), runtime.load(out)
    assert np.mean(np.array(small.predict(texts)) == np.array(full.predict(texts))) >= 0.995
    assert np.abs(small.predict_proba(texts) - full.predict_proba(texts)).max() < 0.02


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_onnx_export_matches_torch(kind, students, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    student, folder = students[kind]
    out = export(folder, tmp_path / "onnx", "onnx")[0]
    assert {"model.onnx", "model.safetensors", "config.json", "vocab.txt"} <= {p.name for p in out.iterdir()}
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    model = runtime.load(out)
    texts = probe_texts(60)
    assert json.loads((out / "config.json").read_text())["temperature"] == TEMPERATURE
    logits = onnx_logits(session, model, texts) / model.temperature  # the export's recipe for probabilities
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), student.predict_proba(texts), atol=1e-5)
    # the ONNX graph is hashed like the weights: a damaged one is refused when the folder loads
    damaged = bytearray((out / "model.onnx").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(damaged))
    with pytest.raises(TinyDistillError, match="model.onnx: corrupt"):
        runtime.load(out)


def test_export_of_a_student_object_and_bad_format(students, tmp_path):
    student, _ = students["cbow"]
    out = export(student, tmp_path / "direct", "numpy")[0]
    assert runtime.load(out).classes_.tolist() == LABELS
    with pytest.raises(TinyDistillError, match="unknown export format"):
        export(student, tmp_path / "x", "tflite")


# ------------------------------------------------------------------------------------------------ tokens

ALPHABET = list("aZ9'_ .,-!?\"()\t\n\r\x0b\x1c\x1f\x7f~é[]") + ["''", "[mask]", "[MASK]", "mask", "k]"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_tokenizer_equals_words_tokenize(lowercase):
    assert words._FAST  # the fast path is on for the pattern it was checked against
    tokens = words.fast_tokenizer(lowercase)
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 14)))
        assert tokens(text) == words.tokenize(text, lowercase), repr(text)
    every_ascii = "".join(chr(i) for i in range(128))
    assert tokens(every_ascii + " " + every_ascii[::-1]) == words.tokenize(
        every_ascii + " " + every_ascii[::-1], lowercase)


def test_encoder_ids_equal_vocabulary_encode(students):
    _, folder = students["bilstm"]
    model = runtime.load(folder)
    texts = probe_texts()
    ids, lengths = model.encoder(texts)
    assert ids.tolist() == [i for t in texts for i in model.vocab.encode(t)]
    assert lengths.tolist() == [len(model.vocab.encode(t)) for t in texts]
    assert max(lengths) == 12  # truncated at max_length


# -------------------------------------------------------------------------------------------- torch-free

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_runtime_imports_and_predicts_without_torch(students):
    _, folder = students["bilstm"]
    script = BLOCK_TORCH + textwrap.dedent(f"""
        try:
            import torch
            raise SystemExit("the blocker let torch through")
        except ImportError:
            pass
        from tinydistill import runtime
        model = runtime.load({str(folder)!r})
        print(model.predict(["good film", ""]), model.predict_proba(["good film"]).shape)
        assert not any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(1, 3)" in done.stdout


# ---------------------------------------------------------------------------------------------- bad input


@pytest.fixture()
def copy_of(students, tmp_path):
    def make(kind: str = "cbow"):
        import shutil

        return shutil.copytree(students[kind][1], tmp_path / f"copy-{kind}")
    return make


def one_line_error(folder, name: str) -> str:
    with pytest.raises(TinyDistillError) as info:
        runtime.load(folder)
    message = str(info.value)
    assert "\n" not in message and name in message, message
    return message


@pytest.mark.parametrize("missing", ["config.json", "vocab.txt", "model.safetensors"])
def test_missing_file_is_named(copy_of, missing):
    folder = copy_of()
    (folder / missing).unlink()
    assert "missing" in one_line_error(folder, missing)


def test_corrupt_config_and_vocabulary(copy_of, tmp_path):
    folder = copy_of()
    (folder / "config.json").write_text("{not json")
    assert "not valid JSON" in one_line_error(folder, "config.json")
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    one_line_error(folder, "config.json")
    one_line_error(tmp_path / "nowhere", "nowhere")

    folder = copy_of("cnn")
    (folder / "vocab.txt").write_text("hello\nworld\n")
    one_line_error(folder, "vocab.txt")
    (folder / "vocab.txt").write_bytes(b"\xff\xfe\x00")
    one_line_error(folder, "vocab.txt")


def test_pickled_weights_are_refused_not_loaded(copy_of, tmp_path):
    folder = copy_of()
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "model.safetensors").write_bytes(pickle.dumps({"embedding.weight": Payload()}))
    assert "pickle" in one_line_error(folder, "model.safetensors")
    assert not marker.exists()
    (folder / "model.safetensors").write_bytes(b"PK\x03\x04 a torch.save zip")
    assert "pickle" in one_line_error(folder, "model.safetensors")
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}!!!")
    one_line_error(folder, "model.safetensors")


def test_config_of_another_student_type(copy_of, students):
    folder = copy_of("cbow")  # cbow weights under a bilstm config
    meta = json.loads((students["bilstm"][1] / "config.json").read_text())
    meta["config"]["vocab_size"] = len((folder / "vocab.txt").read_text().splitlines())
    (folder / "config.json").write_text(json.dumps(meta))
    assert "bilstm" in one_line_error(folder, "model.safetensors")

    folder = copy_of("cnn")  # right type, wrong sizes
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["filters"] = 5
    (folder / "config.json").write_text(json.dumps(meta))
    assert "shape" in one_line_error(folder, "model.safetensors")

    meta["labels"] = ["a", "b"]
    (folder / "config.json").write_text(json.dumps(meta))
    assert "labels" in one_line_error(folder, "config.json")


def test_int8_tensor_without_its_scale(copy_of):
    from safetensors.numpy import save_file

    folder = copy_of()
    weights = runtime.load_weights(folder / "model.safetensors")
    weights["embedding.weight"] = weights["embedding.weight"].astype(np.int8)
    save_file(weights, str(folder / "model.safetensors"))
    assert "scale" in one_line_error(folder, "model.safetensors")


def test_long_batches_are_cut_by_tokens(students, monkeypatch):
    _, folder = students["bilstm"]
    model = runtime.load(folder)
    texts = probe_texts()
    whole = model.predict_proba(texts)
    monkeypatch.setattr(runtime, "MAX_TOKENS", 20)  # many passes, and texts longer than a pass
    np.testing.assert_allclose(model.predict_proba(texts), whole, atol=1e-6)


def test_folder_without_temperature_loads_with_one(copy_of):
    folder = copy_of()
    meta = json.loads((folder / "config.json").read_text())
    del meta["temperature"]  # a folder saved before calibration existed
    (folder / "config.json").write_text(json.dumps(meta))
    model, student = runtime.load(folder), Student.from_pretrained(folder)
    texts = probe_texts(20)
    assert model.temperature == 1.0 and student.temperature_ == 1.0
    np.testing.assert_allclose(model.predict_proba(texts), runtime.softmax(model.logits(texts)), atol=1e-6)
    for bad in (0, -1.0, "2", None, True):
        meta["temperature"] = bad
        (folder / "config.json").write_text(json.dumps(meta))
        assert "'temperature' must be a positive number" in one_line_error(folder, "config.json")


def test_unknown_rate_and_abstention(students):
    model = runtime.load(students["cbow"][1])
    known = model.vocab.words[2]
    texts = [f"{known} {known}", f"{known} zzzqqq", "zzzqqq", "", f"{known} " + "zzzqqq " * 3]
    np.testing.assert_allclose(model.unknown_rate(texts), [0.0, 0.5, 1.0, 1.0, 0.75])
    plain = model.predictions(texts)
    assert [p["label"] for p in plain] == model.predict(texts).tolist() and all(p["reason"] is None for p in plain)
    assert [p["unknown_rate"] for p in plain] == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.75])
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in plain], model.predict_proba(texts),
                               atol=1e-6)
    picky = model.predictions(texts, max_unknown=0.5)
    assert [p["label"] is None for p in picky] == [False, False, True, True, True]
    assert "75% of its words are unknown" in picky[4]["reason"]
    top = model.predict_proba(texts).max(1)
    unsure = model.predictions(texts, min_confidence=float(np.median(top)))
    assert [p["label"] is None for p in unsure] == (top < np.median(top)).tolist()
    assert all("top probability" in p["reason"] for p in unsure if p["label"] is None)
    with pytest.raises(TinyDistillError, match="--min-confidence must be between 0 and 1"):
        model.predictions(texts, min_confidence=1.5)
