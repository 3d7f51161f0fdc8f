"""Peers: the baselines users pick today, trained on the same texts and labels as the students (issue 4).

Every peer is a scikit-learn style classifier on raw texts: `fit(texts, labels) -> self`, `predict(texts)`
gives integer labels, `predict_proba(texts)` one column per entry of `classes_`, `n_parameters` the size of
what was learned. Each imports its library only when used and says which package to install if it is missing.

The hard-label variants need no code of their own: `peer.fit(transfer_texts, teacher_logits.argmax(1))`
trains a peer on the teacher's decisions over the same transfer set, which isolates what soft-logit
distillation adds beyond the extra (pseudo-labelled) text.

Working versions (Python 3.11, numpy 2, torch 2.13 CPU, transformers 5.23): fasttext-community 0.11.9,
model2vec 0.10.0 with skeletoken 0.6.1 (model2vec's `distill` extra pins transformers<5.4, but distilling
works with 5.23, so install the two without the extra), setfit 1.2.0 with sentence-transformers 6.2.0.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from tinydistill.bases import resolve_teacher
from tinydistill.errors import TinyDistillError
from tinydistill.folders import cache_root, replace_folder, staging

log = logging.getLogger(__name__)


def _need(module: str, install: str, peer: str) -> ModuleType:
    """Import `module` for `peer`, or fail with the pip command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TinyDistillError(f"the {peer} peer needs {module}; install with: pip install {install}") \
            from None


class Peer:
    """What every peer shares: labels are mapped to 0..K-1 for the library and back in `predict`."""

    name = "peer"

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> Peer:
        """Train on `texts` with integer `labels`; returns self."""
        texts, y = list(texts), np.asarray(labels)
        if len(texts) != len(y) or len(texts) == 0:
            raise TinyDistillError(f"{self.name}: need one label per text (got {len(texts)} texts, "
                                   f"{len(y)} labels)")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise TinyDistillError(f"{self.name}: the labels hold a single class; nothing to learn")
        self._fit(texts, np.searchsorted(self.classes_, y))
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable label of each text, as values of `classes_`."""
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(classes_)), columns in `classes_` order."""
        raise NotImplementedError

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        raise NotImplementedError


class TfidfLR(Peer):
    """TF-IDF over word uni- and bigrams, then logistic regression (scikit-learn's defaults otherwise)."""

    name = "tfidf-lr"

    def __init__(self, ngram_range: tuple[int, int] = (1, 2), C: float = 1.0, sublinear_tf: bool = True):
        self.ngram_range = ngram_range
        self.C = C  # inverse L2 strength; 1.0 is scikit-learn's default
        self.sublinear_tf = sublinear_tf  # 1 + log(tf): repeated words count less

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        tfidf = TfidfVectorizer(ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf)
        self.model_ = make_pipeline(tfidf, LogisticRegression(C=self.C, max_iter=1000))
        self.model_.fit(texts, y)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model_.predict_proba(list(texts))

    @property
    def n_parameters(self) -> int:
        lr = self.model_[-1]
        return int(lr.coef_.size + lr.intercept_.size)


class FastText(Peer):
    """fastText supervised, with settings for a few hundred texts (its defaults barely move on 200 texts).

    lr 0.5 and 50 epochs instead of 0.1 and 5: SST-2 dev accuracy with 200 labels goes from 51% to 59%.
    One thread keeps a run reproducible for a seed. Builds whose random init covers only thread/10 of the
    input matrix (facebookresearch/fastText#1061) fail on small data with NaN (fasttext 0.9.3 compiled,
    fasttext-numpy2, fasttext-numpy2-wheel, fasttext-modern) or start 90% of it at zero (fasttext-wheel);
    fasttext-community 0.11.9 initialises all of it.
    """

    name = "fasttext"

    def __init__(self, dim: int = 50, epoch: int = 50, lr: float = 0.5, word_ngrams: int = 2,
                 bucket: int = 100_000, lowercase: bool = True, thread: int = 1, seed: int = 0):
        self.dim = dim  # word vector size; 50 is plenty for a few thousand distinct words
        self.epoch = epoch  # passes over the data
        self.lr = lr  # start learning rate, decays linearly to 0
        self.word_ngrams = word_ngrams  # 2 adds hashed bigrams ("not good")
        self.bucket = bucket  # hash buckets for the bigrams (fastText's 2M would be 100M parameters)
        self.lowercase = lowercase  # fastText is case-sensitive; tiny data cannot afford two spellings
        self.thread = thread
        self.seed = seed

    def _line(self, text: str) -> str:
        # one example a line: fastText splits on whitespace and treats a newline as the end of the example
        text = " ".join(text.split())
        return text.lower() if self.lowercase else text

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        fasttext = _need("fasttext", "fasttext-community", self.name)
        with tempfile.TemporaryDirectory(prefix="tinydistill-fasttext-") as tmp:
            path = Path(tmp) / "train.txt"
            lines = (f"__label__{k} {self._line(t)}\n" for t, k in zip(texts, y, strict=True))
            path.write_text("".join(lines), encoding="utf-8")
            try:
                self.model_ = fasttext.train_supervised(
                    str(path), dim=self.dim, epoch=self.epoch, lr=self.lr, wordNgrams=self.word_ngrams,
                    bucket=self.bucket, minCount=1, thread=self.thread, seed=self.seed, verbose=0)
            except RuntimeError as exc:
                hint = "this build leaves most of its matrix uninitialised below 10 threads"
                raise TinyDistillError(f"fastText failed ({exc}); {hint}: pip install fasttext-community") \
                    from None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        labels, probs = self.model_.predict([self._line(t) for t in texts], k=len(self.classes_))
        out = np.zeros((len(labels), len(self.classes_)), dtype=np.float32)
        for row, (names, p) in enumerate(zip(labels, probs, strict=True)):
            out[row, [int(name.removeprefix("__label__")) for name in names]] = p
        return out

    @property
    def n_parameters(self) -> int:
        return int(self.model_.get_input_matrix().size + self.model_.get_output_matrix().size)


class Model2Vec(Peer):
    """model2vec: a static model distilled from a sentence encoder, then `StaticModelForClassification`.

    The static model (one vector per vocabulary token, PCA to `pca_dims`, SIF weights) is made once per
    encoder folder and kept under `cache_dir` (30-60 s for MiniLM-L6 on 2 busy cores). Classifier training
    keeps model2vec's defaults: 10% held out, early stopping with patience 5, the best epoch's weights kept
    (so more epochs or no early stopping changed nothing on SST-2 dev).
    """

    name = "model2vec"

    def __init__(self, body: str = "minilm", cache_dir: str | Path | None = None, pca_dims: int | None = 256,
                 seed: int = 0):
        self.body = body  # encoder: "minilm" (the packaged all-MiniLM-L6-v2) or a local model folder
        self.cache_dir = cache_dir  # default: $TINYDISTILL_CACHE/peers
        self.pca_dims = pca_dims  # static vector size; None keeps the encoder's
        self.seed = seed

    def static_model_dir(self) -> Path:
        """Where the static model for `body` and `pca_dims` is (or will be) cached."""
        source = Path(resolve_teacher(self.body)).resolve()
        key = hashlib.sha1(str(source).encode()).hexdigest()[:10]
        root = Path(self.cache_dir) if self.cache_dir is not None else cache_root() / "peers"
        return root / f"model2vec-{source.name}-{key}-pca{self.pca_dims}"

    def static_model(self):
        """Load the cached static model, distilling it from the encoder folder first if needed."""
        _need("model2vec.train", "model2vec==0.10.0", self.name)
        from model2vec import StaticModel


        folder = self.static_model_dir()
        if not (folder / "config.json").exists():
            _need("skeletoken", "skeletoken==0.6.1", self.name)
            from model2vec.distill import distill_from_model
            from transformers import AutoModel, AutoTokenizer

            source = resolve_teacher(self.body)
            log.info("distilling a model2vec static model from %s into %s", source, folder)
            encoder, tokenizer = AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source)
            static = distill_from_model(encoder, tokenizer, pca_dims=self.pca_dims, device="cpu")
            # write beside the final folder, then rename, so an interrupted run leaves no half model
            tmp = staging(folder)
            static.save_pretrained(str(tmp))
            replace_folder(tmp, folder)
        return StaticModel.from_pretrained(str(folder))

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        from model2vec.train import StaticModelForClassification

        self.model_ = StaticModelForClassification.from_static_model(model=self.static_model())
        self.model_.fit(texts, y.tolist(), random_seed=self.seed, device="cpu")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        # model2vec orders its columns by sorted label, which is ours since y is 0..K-1
        return self.model_.predict_proba(list(texts))

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model_.parameters()))


class SetFit(Peer):
    """SetFit: contrastive fine-tuning of a sentence encoder on label pairs, then a logistic-regression head.

    SetFit's own small-data defaults: 20 pairs per text (`num_iterations`), one epoch, batch 16, body
    learning rate 2e-5. With 200 labels that is 8,000 pairs, about 6 minutes on 2 CPU cores for MiniLM-L6.
    """

    name = "setfit"

    def __init__(self, body: str = "minilm", num_iterations: int = 20, num_epochs: int = 1,
                 batch_size: int = 16, max_length: int = 128, seed: int = 0, show_progress_bar: bool = True):
        self.body = body  # encoder: "minilm" (the packaged all-MiniLM-L6-v2) or a local model folder
        self.num_iterations = num_iterations  # positive + negative pairs drawn per text
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.max_length = max_length  # tokens per text; sentences of the paper's datasets are shorter
        self.seed = seed
        self.show_progress_bar = show_progress_bar

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        setfit = _need("setfit", "setfit==1.2.0", self.name)
        from datasets import Dataset


        self.model_ = setfit.SetFitModel.from_pretrained(resolve_teacher(self.body))
        data = Dataset.from_dict({"text": texts, "label": y.tolist()})
        with tempfile.TemporaryDirectory(prefix="tinydistill-setfit-") as tmp:  # its checkpoints, not in the cwd
            args = setfit.TrainingArguments(
                output_dir=tmp, batch_size=self.batch_size, num_epochs=self.num_epochs,
                num_iterations=self.num_iterations, max_length=self.max_length, seed=self.seed, report_to="none",
                show_progress_bar=self.show_progress_bar)
            setfit.Trainer(model=self.model_, args=args, train_dataset=data).train()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = self.model_.predict_proba(list(texts), as_numpy=True, show_progress_bar=False)
        return np.asarray(probs)

    @property
    def n_parameters(self) -> int:
        head = self.model_.model_head
        return int(sum(p.numel() for p in self.model_.model_body.parameters()) + head.coef_.size
                   + head.intercept_.size)


PEERS: dict[str, type[Peer]] = {
    "fasttext": FastText, "model2vec": Model2Vec, "setfit": SetFit, "tfidf-lr": TfidfLR}
