"""Tiny students: CBoW-FFN (with mean or attention pooling), BiLSTM and a Kim-style CNN, as scikit-learn style
estimators.

`fit(texts, y)` distils when `y` is a 2-D array of teacher logits and trains on hard labels (the paper's
NoDs baseline) when `y` is a 1-D array of labels (strings or integers). Students save like Hugging Face models: a
folder with `config.json`, `vocab.txt` and `model.safetensors` (see DEVELOPERS.md); loading never unpickles.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinydistill import distill
from tinydistill.cards import stamp, write_card
from tinydistill.device import torch_threads
from tinydistill.distill import TrainConfig, fit_module
from tinydistill.errors import TinyDistillError
from tinydistill.evaluate import fit_temperature
from tinydistill.folders import check_hashes, check_out, hashes, replace_folder, staging
from tinydistill.hub import push, resolve
from tinydistill.labels import check_texts, encode_labels, logit_classes
from tinydistill.runtime import FORMAT, read_config, softmax, why_unreadable  # torch-free: reads folders too
from tinydistill.words import TokenizerConfig, Vocabulary, pad_ids

log = logging.getLogger(__name__)


@dataclass
class CBoWConfig:
    vocab_size: int = 5000  # the paper's vocabulary
    embed_dim: int = 16  # the paper's d_emb; embeddings are 5000*16 = 80K of the ~81K parameters
    hidden_dim: int = 64  # one hidden layer of the FFN
    dropout: float = 0.1
    max_length: int = 256
    n_classes: int = 2


@dataclass
class BiLSTMConfig:
    vocab_size: int = 5000
    embed_dim: int = 100  # the paper's size; GloVe 50d is projected up to it (see init_embeddings)
    hidden_dim: int = 64  # per direction; with 2 layers this gives the paper's ~685K parameters
    num_layers: int = 2
    dropout: float = 0.2
    max_length: int = 128
    n_classes: int = 2


@dataclass
class CNNConfig:
    vocab_size: int = 5000
    embed_dim: int = 50
    filters: int = 64  # per window size
    windows: tuple[int, ...] = (3, 4, 5)  # Kim (2014)
    dropout: float = 0.3
    max_length: int = 256
    n_classes: int = 2


class CBoWFFN(nn.Module):
    """Mean of word embeddings, then a one-hidden-layer feed-forward network."""

    def __init__(self, c: CBoWConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        self.ffn = nn.Sequential(nn.Linear(c.embed_dim, c.hidden_dim), nn.ReLU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.hidden_dim, c.n_classes))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        summed = self.embedding(ids).sum(1)
        return self.ffn(summed / lengths.clamp(min=1).unsqueeze(1).to(summed.dtype))


class AttnCBoW(nn.Module):
    """The CBoW-FFN whose FFN reads, beside the mean of the word embeddings, a mean weighted by attention: a
    learned score of each word vector, softmaxed over the text's words. A word that carries the label can outweigh
    the rest of a long text, which a plain mean dilutes (`results/students.md`: +4.7 macro-F1 on Emotion)."""

    def __init__(self, c: CBoWConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        self.score = nn.Linear(c.embed_dim, 1)
        self.ffn = nn.Sequential(nn.Linear(2 * c.embed_dim, c.hidden_dim), nn.ReLU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.hidden_dim, c.n_classes))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        mean = x.sum(1) / lengths.clamp(min=1).unsqueeze(1).to(x.dtype)
        # padding scores -1e9, so its weight underflows to exactly 0 beside any word's; an empty text weighs
        # only padding, whose embedding row is zero: its attended mean is 0, like its mean
        scores = self.score(x).squeeze(2).masked_fill(ids == 0, -1e9)
        attended = (torch.softmax(scores, dim=1).unsqueeze(2) * x).sum(1)
        return self.ffn(torch.cat([mean, attended], dim=1))


class BiLSTM(nn.Module):
    """Two stacked bidirectional LSTMs; the last hidden states of both directions feed a linear layer."""

    def __init__(self, c: BiLSTMConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, num_layers=c.num_layers, bidirectional=True,
                            batch_first=True, dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(2 * c.hidden_dim, c.n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths.clamp(min=1).cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        last = torch.cat([h[-2], h[-1]], dim=1)  # top layer, forward and backward
        return self.out(self.dropout(last))


class CNN(nn.Module):
    """Kim (2014): parallel convolutions over word embeddings, max-pooled over time."""

    def __init__(self, c: CNNConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(c.embed_dim, c.filters, w) for w in c.windows)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.filters * len(c.windows), c.n_classes)
        self.min_len = max(c.windows)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] < self.min_len:  # a window wider than the text: pad so every filter fires once
            ids = nn.functional.pad(ids, (0, self.min_len - ids.shape[1]))
        x = self.embedding(ids).transpose(1, 2)
        # a window that starts past the text's own end (it only exists because a longer text shares the batch)
        # is zeroed, so a text's output never depends on its batch
        end = lengths.clamp(min=self.min_len).unsqueeze(1)
        pooled = []
        for conv in self.convs:
            assert isinstance(conv, nn.Conv1d)
            out = torch.relu(conv(x))
            starts = torch.arange(out.shape[2], device=out.device).unsqueeze(0)
            pooled.append(out.masked_fill((starts > end - conv.kernel_size[0]).unsqueeze(1), 0.0).amax(dim=2))
        return self.out(self.dropout(torch.cat(pooled, dim=1)))


ARCHITECTURES: dict[str, tuple[type, type]] = {
    "cbow": (CBoWConfig, CBoWFFN),
    "cbow-attn": (CBoWConfig, AttnCBoW),
    "bilstm": (BiLSTMConfig, BiLSTM),
    "cnn": (CNNConfig, CNN),
}
PARAMS = ("model_type", "config", "train", "vectors")  # Student's constructor arguments (get_params)


class Student:
    """A tiny text classifier with scikit-learn verbs and the model vocabulary of DEVELOPERS.md.

    >>> student = Student("cbow").fit(texts, teacher_logits, ["neg", "pos"])   # distil
    >>> student = Student("cbow").fit(texts, ["pos", "neg", ...])               # or train on labels (NoDs)
    >>> student.predict(["a fine film"])                                         # -> array(['pos'])

    The constructor only stores its arguments (`get_params`/`set_params`: `sklearn.base.clone` works); what `fit`
    learns ends with `_`. `predict`/`predict_proba` take a list of texts (one string is a TypeError)."""

    def __init__(self, model_type: str = "cbow", config=None, train=None, vectors=None):
        self.model_type = model_type  # "cbow", "cbow-attn", "bilstm" or "cnn" (checked by `fit`)
        self.config = config  # a CBoWConfig, BiLSTMConfig or CNNConfig; None means its defaults
        self.train = train  # a distill.TrainConfig; None means its defaults
        self.vectors = vectors  # optional (words, matrix) pre-trained word vectors for the embedding
        self.provenance: dict | None = None  # where the model came from; saved in config.json and README.md

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments (scikit-learn's estimator protocol; `deep` is accepted and ignored)."""
        return {name: getattr(self, name) for name in PARAMS}

    def set_params(self, **params) -> Student:
        """Set constructor arguments by name (scikit-learn's estimator protocol); they take effect at `fit`."""
        for name, value in params.items():
            if name not in PARAMS:
                raise ValueError(f"invalid parameter {name!r} for Student; expected one of {list(PARAMS)}")
            setattr(self, name, value)
        return self

    # ----------------------------------------------------------------------------------------- fit
    def fit(self, texts: Sequence[str], y, classes: Sequence | None = None,
            vocab_texts: Sequence[str] | None = None, hard: Sequence[int] | None = None,
            progress: bool = True) -> Student:
        """Train on `texts`: distil when `y` is (n, classes) logits, else cross-entropy on the labels `y` (n,).

        Labels may be strings or integers: `classes_` is `classes` when given (the labels in their column order,
        every one kept even if `y` lacks it), else the sorted distinct values of `y` ({1, 5} gives two classes).
        With logits, `classes` names their columns (default "0", "1", ...). The vocabulary comes from
        `vocab_texts` (default: `texts`), the transfer set in the pipeline. `hard` gives gold class indices
        into `classes_` (-1 where unknown) for the optional hard-label mix of `TrainConfig.alpha`.
        """
        check_texts(texts)
        y = np.asarray(y)
        if len(texts) != len(y):
            raise TinyDistillError(f"{len(texts)} texts but {len(y)} targets")
        if len(texts) == 0:
            raise TinyDistillError("no texts to train on")
        classes_, y = (logit_classes(y.shape[1], classes), y) if y.ndim == 2 else encode_labels(y, classes)
        self._build(classes_, vocab_texts if vocab_texts is not None else texts)
        desc = f"{self.model_type} {'distil' if y.ndim == 2 else 'NoDs'}"
        self.history_ = fit_module(self.module_, self.vocab_.encode_batch(texts), y, self.train or TrainConfig(),
                                   hard=None if hard is None else np.asarray(hard), progress=progress, desc=desc)
        return self

    def fit_source(self, source, classes: Sequence | None = None, progress: bool = True) -> Student:
        """Distil from a transfer set read in row blocks (``shards.LogitShards`` or ``InMemoryLogits``);
        `classes` names the logits' columns, as in `fit`.

        One streaming pass counts the words for the vocabulary; training then reads one block at a time
        (``distill.fit_stream``), so memory does not grow with the transfer set.
        """
        if len(source) == 0:
            raise TinyDistillError("no texts to train on")
        classes_ = logit_classes(source.read(0, 1)[1].shape[1], classes)
        size = distill.BLOCK_ROWS  # read at call time (tests shrink it)
        texts = (text for start in range(0, len(source), size)
                 for text in source.read(start, min(start + size, len(source)))[0])
        self._build(classes_, texts)
        self.history_ = distill.fit_stream(self.module_, source, self.vocab_.encode_batch,
                                           self.train or TrainConfig(), progress=progress,
                                           desc=f"{self.model_type} distil")
        return self

    def _build(self, classes_: np.ndarray, vocab_texts: Iterable[str]) -> None:
        """The vocabulary from ``vocab_texts`` and a fresh module (seeded, optionally with word vectors)."""
        if self.model_type not in ARCHITECTURES:
            raise TinyDistillError(f"unknown student {self.model_type!r}; expected one of {sorted(ARCHITECTURES)}")
        config_cls, module_cls = ARCHITECTURES[self.model_type]
        config = replace(self.config) if self.config else config_cls()  # a copy: fit never edits its params
        config.n_classes = len(classes_)
        self.vocab_ = Vocabulary.build(vocab_texts, config.vocab_size, TokenizerConfig(max_length=config.max_length))
        config.vocab_size = len(self.vocab_)  # a small corpus may give fewer words than asked
        self.config_ = config
        torch.manual_seed((self.train or TrainConfig()).seed)
        self.module_ = module_cls(config)
        if self.vectors is not None:
            init_embeddings(self.module_.embedding, self.vocab_, *self.vectors)
        self.classes_ = classes_
        self.temperature_ = 1.0  # until `calibrate`

    # ------------------------------------------------------------------------------------- predict
    @torch.no_grad()
    def logits(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Raw scores, shape (n, classes); batches are sorted by length so padding stays small."""
        check_texts(texts)
        self.module_.eval()
        ids = self.vocab_.encode_batch(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(ids), self.config_.n_classes), dtype=np.float32)
        with torch_threads(1):  # one core per student: tiny matrices, and it keeps speed claims conservative
            for start in range(0, len(ids), batch_size):
                rows = order[start: start + batch_size]
                tokens, lengths = pad_ids([ids[i] for i in rows])
                out[rows] = self.module_(torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, columns in `classes_` order: softmax(logits / `temperature_`, 1 until `calibrate`)."""
        return softmax(self.logits(texts), getattr(self, "temperature_", 1.0))

    def calibrate(self, texts: Sequence[str], target) -> Student:
        """Fit the temperature of `predict_proba` on held-out texts: `target` holds their class indices into
        `classes_` (n,) or the probabilities to match (n, classes). The argmax, hence `predict`, does not change."""
        self.temperature_ = fit_temperature(self.logits(texts), target)
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable label of each text, values of `classes_` (class indices: `logits(texts).argmax(1)`)."""
        return self.classes_[self.logits(texts).argmax(1)]

    def n_parameters(self) -> dict[str, int]:
        """Parameter counts by top-level layer, plus the total."""
        counts: dict[str, int] = {}
        for name, p in self.module_.named_parameters():
            counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
        counts["total"] = sum(counts.values())
        return counts

    # -------------------------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write config.json (with the weights' sha256), vocab.txt, model.safetensors and a model card (README.md)
        atomically into `folder`.

        `config.json`'s `provenance` entry (and the card) hold `self.provenance` plus the parameter count. An
        existing student folder is replaced; anything else that is there is refused unless `overwrite`.
        """
        from safetensors.torch import save_file

        folder = check_out(folder, "student", overwrite, option="folder")
        state = self.module_.state_dict()
        bad = [k for k, v in state.items() if not torch.isfinite(v).all()]
        if bad:
            raise TinyDistillError(f"{folder}: not saved: tensor {bad[0]!r} holds NaN or infinite values "
                                   "(training diverged; try a lower learning rate)")
        tmp = staging(folder)
        try:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
            provenance = {**stamp(), **(self.provenance or {}), "params": self.n_parameters()["total"],
                          "classes": len(self.classes_)}
            meta = {"format": FORMAT, "version": 1, "model_type": self.model_type, "config": asdict(self.config_),
                    "labels": self.classes_.tolist(), "tokenizer": self.vocab_.config_dict(),
                    "sha256": hashes(tmp, ["model.safetensors"]),
                    "temperature": float(getattr(self, "temperature_", 1.0)), "provenance": provenance}
            (tmp / "config.json").write_text(json.dumps(meta, indent=2, default=float))
            write_card(tmp, meta)
            self.vocab_.save(tmp)
            replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool = False) -> str:
        """Save to a temporary folder and upload it, model card included, to the Hub repo `repo_id`; the URL."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return push(self.save_pretrained(Path(tmp) / "model"), repo_id, token=token, private=private)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> Student:
        """Rebuild from config and load weights; errors name the file that is wrong.

        `folder` is a local folder or a Hub repo id (`org/name`, fetched by `huggingface_hub`, which reads
        its local cache when offline); a local folder of that name wins.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = resolve(folder)
        meta = read_config(folder)
        config_path = folder / "config.json"
        config_cls, module_cls = ARCHITECTURES[meta["model_type"]]
        try:
            config = config_cls(**meta["config"])
        except TypeError as exc:
            raise TinyDistillError(f"{config_path}: bad {meta['model_type']} config ({exc})") from None
        if isinstance(config, CNNConfig):
            config.windows = tuple(config.windows)
        student = cls(meta["model_type"], config)
        student.config_ = config
        student.vocab_ = Vocabulary.load(folder, meta.get("tokenizer"))
        if len(student.vocab_) != config.vocab_size:
            raise TinyDistillError(f"{folder / 'vocab.txt'}: {len(student.vocab_)} words but config.json says "
                                   f"vocab_size {config.vocab_size}")
        if len(meta["labels"]) != config.n_classes:
            raise TinyDistillError(f"{config_path}: {len(meta['labels'])} labels but n_classes is {config.n_classes}")
        student.classes_ = np.array(meta["labels"])
        student.provenance = meta.get("provenance")
        student.temperature_ = float(meta.get("temperature", 1.0))
        weights = folder / "model.safetensors"
        if not weights.exists():
            raise TinyDistillError(f"{weights}: missing weights file")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise TinyDistillError(why_unreadable(weights, exc)) from None
        with torch.device("meta"):  # the shapes the config implies, without allocating them
            expected = {k: tuple(v.shape) for k, v in module_cls(config).state_dict().items()}
        for name, value in state.items():
            if name in expected and tuple(value.shape) != expected[name]:
                raise TinyDistillError(f"{weights}: tensor {name!r} has shape {tuple(value.shape)} but config.json "
                                       f"implies {expected[name]}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise TinyDistillError(f"{weights}: tensor {name!r} holds NaN or infinite values; the weights are "
                                       "corrupt")
        check_hashes(folder, meta.get("sha256"), config_path)
        student.module_ = module_cls(config)
        try:
            student.module_.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise TinyDistillError(f"{weights}: not a valid safetensors file for this model ({first})") from None
        student.module_.eval()
        return student


def vocabulary(model_type: str, texts: Iterable[str]) -> Vocabulary:
    """The vocabulary a `Student(model_type)` of the default config builds from `texts` when it fits on them."""
    config = ARCHITECTURES[model_type][0]()
    return Vocabulary.build(texts, config.vocab_size, TokenizerConfig(max_length=config.max_length))


def init_embeddings(embedding: nn.Embedding, vocab: Vocabulary, words: Sequence[str], matrix: np.ndarray,
                    seed: int = 0) -> int:
    """Copy pre-trained vectors into the embedding rows of known words; returns how many were found.

    When the vectors are narrower than the embedding (GloVe 50d into the paper's 100d), they are mapped
    through a fixed random matrix with orthonormal rows, which keeps their dot products and distances. When
    they are wider (GloVe 50d into the CBoW's 16d), the vocabulary's vectors are reduced to their top
    principal directions, which keep as much of their geometry as that many dimensions can.
    """
    dim = embedding.embedding_dim
    index = {w: i for i, w in enumerate(words)}
    rows = [(i, index[w]) for i, w in enumerate(vocab.words) if i > 1 and w in index]
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape[1] < dim:
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, matrix.shape[1])))
        matrix = matrix @ q.T.astype(np.float32)  # (src, dim) with orthonormal rows
    elif matrix.shape[1] > dim and rows:
        known = matrix[[j for _, j in rows]]
        _, _, vt = np.linalg.svd(known - known.mean(0), full_matrices=False)
        matrix = (matrix - known.mean(0)) @ vt[:dim].T
    if rows:
        ours, theirs = map(list, zip(*rows))
        with torch.no_grad():
            embedding.weight[ours] = torch.from_numpy(matrix[theirs])
    log.info("initialised %d of %d embedding rows from pre-trained vectors", len(rows), len(vocab))
    return len(rows)
