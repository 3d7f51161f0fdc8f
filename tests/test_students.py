"""One contract over every student: fit, predict shapes, learning, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.students import ARCHITECTURES, BiLSTMConfig, CBoWConfig, CNNConfig, Student, init_embeddings

SMALL = {"cbow": CBoWConfig(embed_dim=8, hidden_dim=16), "cbow-attn": CBoWConfig(embed_dim=8, hidden_dim=16),
         "bilstm": BiLSTMConfig(embed_dim=16, hidden_dim=16, dropout=0.0),
         "cnn": CNNConfig(embed_dim=8, filters=8)}
FAST = TrainConfig(epochs=60, min_steps=0, lr=1e-2, batch_size=16, patience=100)


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_student_contract(kind, tmp_path):
    texts, labels = toy_texts(160)
    logits = np.where(np.eye(2)[labels] > 0, 2.0, -2.0).astype(np.float32)  # a confident "teacher"
    student = Student(kind, SMALL[kind], FAST).fit(texts, logits, ["neg", "pos"], progress=False)
    test, gold = toy_texts(40, seed=1)
    assert student.predict_proba(test).shape == (40, 2)
    assert np.allclose(student.predict_proba(test).sum(1), 1, atol=1e-5)
    assert list(student.classes_) == ["neg", "pos"]
    assert (student.predict(test) == np.array(["neg", "pos"])[gold]).mean() >= 0.9  # it learned the toy task
    edge = ["", "word " * 1000, "unseen tokens only"]
    assert student.predict(edge).shape == (3,)
    student.save_pretrained(tmp_path / kind)
    assert sorted(p.name for p in (tmp_path / kind).iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                                  "vocab.txt"]
    loaded = Student.from_pretrained(tmp_path / kind)
    np.testing.assert_allclose(loaded.logits(test + edge), student.logits(test + edge), atol=1e-6)


def test_hard_labels_train_with_cross_entropy():
    texts, labels = toy_texts(160)
    names = np.array(["neg", "pos"])[labels]  # the labels themselves, strings
    student = Student("cbow", SMALL["cbow"], FAST).fit(texts, names, progress=False)
    test, gold = toy_texts(40, seed=1)
    assert list(student.classes_) == ["neg", "pos"]
    assert (student.predict(test) == np.array(["neg", "pos"])[gold]).mean() >= 0.9


def test_kl_loss_and_hard_label_mix_train():
    texts, labels = toy_texts(160)
    logits = np.where(np.eye(2)[labels] > 0, 1.0, -1.0).astype(np.float32)
    config = TrainConfig(loss="kl", temperature=2.0, alpha=0.5, epochs=30, min_steps=0, lr=1e-2, patience=100)
    hard = np.where(np.arange(160) % 4 == 0, labels, -1)
    student = Student("cbow", SMALL["cbow"], config).fit(texts, logits, hard=hard, progress=False)
    test, gold = toy_texts(40, seed=1)
    assert (student.predict(test) == np.array(["0", "1"])[gold]).mean() >= 0.9  # logits without names


def test_default_sizes_match_the_paper():
    texts, labels = toy_texts(40)
    big = [f"w{i}" for i in range(6000)]  # enough distinct words to fill a 5000-word vocabulary
    quick = TrainConfig(epochs=1, min_steps=0)
    cbow = Student("cbow", train=quick).fit(texts + big, np.array(labels + [0] * 6000), progress=False)
    assert 78_000 <= cbow.n_parameters()["total"] <= 82_000  # paper: ~80K
    lstm = Student("bilstm", train=quick).fit(texts[:8] + big[:5000], np.array(labels[:8] + [0] * 5000),
                                              progress=False)
    assert 680_000 <= lstm.n_parameters()["total"] <= 690_000  # paper: ~685K


def test_pretrained_vectors_are_projected_into_the_embedding():
    from tinydistill.words import Vocabulary

    vocab = Vocabulary.build(["good bad film"], 10)
    module = Student("bilstm", BiLSTMConfig(embed_dim=6, vocab_size=10))
    config = BiLSTMConfig(embed_dim=6, vocab_size=len(vocab))
    from tinydistill.students import BiLSTM

    emb = BiLSTM(config).embedding
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    assert init_embeddings(emb, vocab, ["good", "bad"], vectors) == 2
    good, bad = emb.weight[vocab.index["good"]].detach().numpy(), emb.weight[vocab.index["bad"]].detach().numpy()
    assert np.isclose(np.linalg.norm(good), 1.0, atol=1e-5) and np.isclose(np.linalg.norm(bad), 2.0, atol=1e-5)
    assert np.isclose(good @ bad, 0.0, atol=1e-5)  # the projection keeps angles
    assert module.model_type == "bilstm"


def test_bad_student_inputs(tmp_path):
    with pytest.raises(TinyDistillError, match="unknown student"):
        Student("transformer").fit(["a", "b"], ["x", "y"])
    with pytest.raises(TinyDistillError, match="3 texts but 2 targets"):
        Student("cbow").fit(["a", "b", "c"], np.array([0, 1]))
    with pytest.raises(TinyDistillError, match="config.json: missing"):
        (tmp_path / "m").mkdir()
        Student.from_pretrained(tmp_path / "m")


def test_a_texts_output_does_not_depend_on_its_batch():
    texts, labels = toy_texts(40)
    logits = np.where(np.eye(2)[labels] > 0, 2.0, -2.0).astype(np.float32)
    mixed = ["good", "a b", "the film was really very good and fun " * 3, ""]
    for kind in sorted(ARCHITECTURES):
        student = Student(kind, SMALL[kind], TrainConfig(epochs=2, min_steps=0)).fit(texts, logits, progress=False)
        alone = np.concatenate([student.logits([t]) for t in mixed])
        np.testing.assert_allclose(student.logits(mixed), alone, atol=1e-5, err_msg=kind)
