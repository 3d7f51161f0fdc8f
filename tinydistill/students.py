"""Tiny students: CBoW-FFN, BiLSTM and a Kim-style CNN, as scikit-learn style estimators.

`fit(texts, y)` distils when `y` is a 2-D array of teacher logits and trains on hard labels (the paper's
NoDs baseline) when `y` is a 1-D array of class indices. Students save like Hugging Face models: a folder
with `config.json`, `vocab.txt` and `model.safetensors` (see DEVELOPERS.md); loading never unpickles.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinydistill.errors import TinyDistillError
from tinydistill.runtime import FORMAT, read_config, replace_folder, softmax  # torch-free: reads folders too
from tinydistill.words import TokenizerConfig, Vocabulary

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
            starts = torch.arange(out.shape[2]).unsqueeze(0)
            pooled.append(out.masked_fill((starts > end - conv.kernel_size[0]).unsqueeze(1), 0.0).amax(dim=2))
        return self.out(self.dropout(torch.cat(pooled, dim=1)))


ARCHITECTURES: dict[str, tuple[type, type]] = {
    "cbow": (CBoWConfig, CBoWFFN),
    "bilstm": (BiLSTMConfig, BiLSTM),
    "cnn": (CNNConfig, CNN),
}


class Student:
    """A tiny text classifier with scikit-learn verbs.

    >>> student = Student("cbow").fit(texts, teacher_logits)   # distil
    >>> student.predict(["a fine film"])                           # -> label indices
    """

    def __init__(self, model_type: str = "cbow", config=None, train=None, vectors=None):
        if model_type not in ARCHITECTURES:
            raise TinyDistillError(f"unknown student {model_type!r}; expected one of {sorted(ARCHITECTURES)}")
        self.model_type = model_type
        self.config = config
        self.train = train  # a distill.TrainConfig; None means its defaults
        self.vectors = vectors  # optional (words, matrix) pre-trained word vectors for the embedding

    # ----------------------------------------------------------------------------------------- fit
    def fit(self, texts: Sequence[str], y, label_names: Sequence[str] | None = None,
            vocab_texts: Sequence[str] | None = None, hard: Sequence[int] | None = None,
            progress: bool = True) -> Student:
        """Train on `texts`: distil when `y` is (n, classes) logits, else cross-entropy on class indices.

        The vocabulary comes from `vocab_texts` (default: `texts`), the transfer set in the pipeline.
        `hard` gives gold labels (-1 where unknown) for the optional hard-label mix of `TrainConfig.alpha`.
        """
        from tinydistill.distill import TrainConfig, fit_module

        y = np.asarray(y)
        if len(texts) != len(y):
            raise TinyDistillError(f"{len(texts)} texts but {len(y)} targets")
        if len(texts) == 0:
            raise TinyDistillError("no texts to train on")
        n_classes = y.shape[1] if y.ndim == 2 else int(len(label_names) if label_names else y.max() + 1)
        config_cls, module_cls = ARCHITECTURES[self.model_type]
        config = replace(self.config) if self.config else config_cls()  # a copy: fit never edits its params
        config.n_classes = n_classes
        self.vocab_ = Vocabulary.build(vocab_texts if vocab_texts is not None else texts, config.vocab_size,
                                       TokenizerConfig(max_length=config.max_length))
        config.vocab_size = len(self.vocab_)  # a small corpus may give fewer words than asked
        self.config_ = config
        torch.manual_seed((self.train or TrainConfig()).seed)
        self.module_ = module_cls(config)
        if self.vectors is not None:
            init_embeddings(self.module_.embedding, self.vocab_, *self.vectors)
        self.classes_ = np.array(list(label_names) if label_names else [str(i) for i in range(n_classes)])
        self.temperature_ = 1.0  # until `calibrate`
        desc = f"{self.model_type} {'distil' if y.ndim == 2 else 'NoDs'}"
        self.history_ = fit_module(self.module_, self.vocab_.encode_batch(texts), y, self.train or TrainConfig(),
                                   hard=None if hard is None else np.asarray(hard), progress=progress, desc=desc)
        return self

    # ------------------------------------------------------------------------------------- predict
    @torch.no_grad()
    def logits(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Raw scores, shape (n, classes); batches are sorted by length so padding stays small."""
        from tinydistill.distill import pad_ids, torch_threads

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
        """Class probabilities: softmax of the logits divided by `temperature_` (1 until `calibrate`)."""
        return softmax(self.logits(texts), getattr(self, "temperature_", 1.0))

    def calibrate(self, texts: Sequence[str], target) -> Student:
        """Fit the temperature of `predict_proba` on held-out texts: `target` holds their class indices (n,)
        or the probabilities to match (n, classes). The argmax, hence `predict`, does not change."""
        from tinydistill.evaluate import fit_temperature

        self.temperature_ = fit_temperature(self.logits(texts), target)
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class indices (index `classes_` for names)."""
        return self.logits(texts).argmax(1)

    def n_parameters(self) -> dict[str, int]:
        """Parameter counts by top-level layer, plus the total."""
        counts: dict[str, int] = {}
        for name, p in self.module_.named_parameters():
            counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
        counts["total"] = sum(counts.values())
        return counts

    # -------------------------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write config.json, vocab.txt and model.safetensors atomically into `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": 1, "model_type": self.model_type, "config": asdict(self.config_),
                "labels": [str(c) for c in self.classes_], "tokenizer": self.vocab_.config_dict(),
                "temperature": float(getattr(self, "temperature_", 1.0))}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        self.vocab_.save(tmp)
        save_file({k: v.contiguous() for k, v in self.module_.state_dict().items()}, str(tmp / "model.safetensors"))
        replace_folder(tmp, folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> Student:
        """Rebuild from config and load weights; errors name the file that is wrong."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        meta = read_config(folder)
        config_cls, module_cls = ARCHITECTURES[meta["model_type"]]
        config = config_cls(**meta["config"])
        if isinstance(config, CNNConfig):
            config.windows = tuple(config.windows)
        student = cls(meta["model_type"], config)
        student.config_ = config
        student.vocab_ = Vocabulary.load(folder, meta.get("tokenizer"))
        student.classes_ = np.array(meta["labels"])
        student.temperature_ = float(meta.get("temperature", 1.0))
        student.module_ = module_cls(config)
        weights = folder / "model.safetensors"
        if not weights.exists():
            raise TinyDistillError(f"{weights}: missing weights file")
        try:
            state = load_file(str(weights))
            student.module_.load_state_dict(state)
        except (SafetensorError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise TinyDistillError(f"{weights}: not a valid safetensors file for this model ({first})") from None
        student.module_.eval()
        return student


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
