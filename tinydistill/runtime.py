"""Torch-free inference: a saved or exported student predicts from raw text with numpy (and safetensors) alone.

>>> from tinydistill import runtime
>>> model = runtime.load("runs/sst2-200-s0/students/cbow")   # a student folder or an exported one
>>> model.predict(["a gorgeous, witty film"])                  # -> array(['positive'], dtype='<U8')
>>> model.predict_proba(["a gorgeous, witty film"])            # -> array([[0.03, 0.97]], dtype=float32)

The three students are re-implemented on whole batches: CBoW gathers and averages, the BiLSTM runs every
sequence of a batch in lockstep in PyTorch's packed layout, the CNN sums per-word lookup tables. Outputs match
the torch modules within float32 rounding.
This module also reads the student folder format (`FORMAT`, `read_config`; writing rules and hashes are in
`tinydistill.folders`), so that reading a folder needs no torch; `tinydistill.students` imports them from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from tinydistill import words
from tinydistill.errors import TinyDistillError
from tinydistill.folders import STUDENT_FORMAT, check_hashes
from tinydistill.labels import check_texts
from tinydistill.words import Vocabulary

FORMAT = STUDENT_FORMAT
MODEL_TYPES = ("cbow", "bilstm", "cnn")
WEIGHTS = "model.safetensors"
SCALE = ".scale"  # int8 exports store `name` as int8 and `name + SCALE` as one float32 scale per output row
MAX_TOKENS = 32_768  # tokens per forward pass: bounds the BiLSTM's gate buffer (2 x tokens x 4H floats)


# ------------------------------------------------------------------------------------------ folder format


def read_config(folder: Path) -> dict:
    """The student's config.json, checked; shared by the torch students, the runtime and the exporter."""
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise TinyDistillError(f"{folder}: not a model folder")
    if not path.exists():
        raise TinyDistillError(f"{path}: missing config file")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TinyDistillError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TinyDistillError(f"{path}: not a tinydistill student config (expected format {FORMAT!r})")
    if meta.get("model_type") not in MODEL_TYPES:
        raise TinyDistillError(f"{path}: unknown model_type {meta.get('model_type')!r}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("labels"), list):
        raise TinyDistillError(f"{path}: expected a 'config' object and a 'labels' list")
    if not all(isinstance(x, str) for x in meta["labels"]) and not all(
            isinstance(x, int | float) for x in meta["labels"]):
        raise TinyDistillError(f"{path}: 'labels' must be all strings or all numbers")
    _check_settings(meta["config"], path, "")
    tokenizer = meta.get("tokenizer")
    if tokenizer is not None:
        if not isinstance(tokenizer, dict):
            raise TinyDistillError(f"{path}: 'tokenizer' must be an object")
        _check_settings(tokenizer, path, "tokenizer ")
        if not isinstance(tokenizer.get("lowercase", True), bool):
            raise TinyDistillError(f"{path}: tokenizer lowercase is {tokenizer['lowercase']!r}; expected true or false")
    t = meta.get("temperature", 1.0)  # folders written before calibration have none: temperature 1
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
        raise TinyDistillError(f"{path}: 'temperature' must be a positive number (got {t!r})")
    return meta


# settings that size arrays, each a whole number in range: a damaged or hostile config.json is then a one-line
# error, not a terabyte allocation (the weights' shapes are checked against them before anything is built)
SIZE_LIMITS = {"vocab_size": 10_000_000, "embed_dim": 65_536, "hidden_dim": 65_536, "num_layers": 64,
               "filters": 65_536, "n_classes": 100_000, "max_length": 10_000_000}


def _check_settings(settings: dict, path: Path, what: str) -> None:
    for name, limit in SIZE_LIMITS.items():
        if name in settings:
            value = settings[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise TinyDistillError(f"{path}: {what}{name} is {value!r}; expected a whole number from 1 to "
                                       f"{limit:,}")
    windows = settings.get("windows")
    if windows is not None and (not isinstance(windows, list | tuple) or not windows or any(
            isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 64 for w in windows)):
        raise TinyDistillError(f"{path}: {what}windows is {windows!r}; expected a list of widths from 1 to 64")
    dropout = settings.get("dropout")
    if dropout is not None and (not isinstance(dropout, int | float) or not 0 <= dropout < 1):
        raise TinyDistillError(f"{path}: {what}dropout is {dropout!r}; expected a number from 0 to below 1")


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits divided by the student's calibration temperature (config.json).

    The one softmax of the package (students, teacher, runtime, exports, calibration); numpy only."""
    scores = scores / np.float32(temperature) if temperature != 1.0 else scores
    scores = np.exp(scores - scores.max(1, keepdims=True))
    return scores / scores.sum(1, keepdims=True)


def log_softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log(softmax(scores / temperature)) in the scores' own precision (float64 for `evaluate.fit_temperature`)."""
    scores = scores / temperature
    scores = scores - scores.max(1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(1, keepdims=True))


def check_abstain(min_confidence: float | None, max_unknown: float | None) -> None:
    """One-line errors for abstention thresholds outside [0, 1] (`--min-confidence`, `--max-unknown`)."""
    for option, value in (("--min-confidence", min_confidence), ("--max-unknown", max_unknown)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise TinyDistillError(f"{option} must be between 0 and 1 (got {value})")



def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as float32 arrays; int8 tensors are dequantised with their scales.

    Never unpickles: a pickle (or a `torch.save` zip) is refused with an error that names the file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.exists():
        raise TinyDistillError(f"{path}: missing weights file")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TinyDistillError(why_unreadable(path, exc)) from None
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith(SCALE):
            continue
        if value.dtype == np.int8:
            scale = raw.get(name + SCALE)
            if scale is None or scale.shape != value.shape[:1]:
                raise TinyDistillError(f"{path}: int8 tensor {name!r} has no matching {name + SCALE!r}")
            value = value.astype(np.float32) * scale.astype(np.float32).reshape((-1,) + (1,) * (value.ndim - 1))
        out[name] = np.asarray(value, dtype=np.float32)
        if not np.isfinite(out[name]).all():
            raise TinyDistillError(f"{path}: tensor {name!r} holds NaN or infinite values; the weights are corrupt")
    return out


def why_unreadable(path: Path, exc: Exception) -> str:
    """A one-line reason a weights file does not load: truncated, a pickle, or otherwise not safetensors."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(9)
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
    if header is not None and head[8:9] == b"{" and 8 + header > size:
        return f"{path}: truncated: its header says {header:,} bytes but the file has {size:,}"
    if header is not None and head[8:9] == b"{":
        try:
            with path.open("rb") as handle:
                handle.seek(8)
                entries = json.loads(handle.read(header))
            need = 8 + header + max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"),
                                    default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            need = 0
        if need > size:
            return f"{path}: truncated: its tensors need {need:,} bytes but the file has {size:,}"
        return f"{path}: a corrupt safetensors file ({_first_line(exc)})"
    if head[:1] == b"\x80" or head[:2] == b"PK":  # a pickle's PROTO opcode, or the zip that torch.save writes
        return f"{path}: a pickle or torch.save file, not safetensors; it is never unpickled"
    return f"{path}: not a valid safetensors file ({_first_line(exc)})"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["unreadable"])[0]


# ---------------------------------------------------------------------------------------------- tokens


class Encoder:
    """`Vocabulary.encode` over a batch, returning flat ids and lengths.

    Tokenising is most of the runtime's time, so `tokens` is `words.fast_tokenizer`: the tokens of
    `words.tokenize`, by a faster path for ASCII texts.
    """

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.max_length = vocab.config.max_length
        self.tokens = words.fast_tokenizer(vocab.config.lowercase)

    def unknown_rate(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Per text, the share of the tokens it reads that are not in the vocabulary ([UNK], id 1); a text
        without any token counts as wholly unknown (1.0): the student knows nothing of it."""
        text_of_token = np.repeat(np.arange(len(lengths)), lengths)
        unknown = np.bincount(text_of_token, weights=ids == 1, minlength=len(lengths))
        return np.where(lengths > 0, unknown / np.maximum(lengths, 1), 1.0)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat int64 ids of all texts, one after the other; int64 lengths)."""
        m = self.max_length
        tokens = [self.tokens(t)[:m] for t in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = list(chain.from_iterable(tokens))
        ids = np.fromiter(map(self.vocab.index.get, flat, repeat(1)), dtype=np.int64, count=len(flat))
        return ids, lengths


# -------------------------------------------------------------------------------------------- students


def _need(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path,
          model_type: str) -> np.ndarray:
    """A tensor of the expected shape, or an error naming the weights file."""
    if name not in weights:
        raise TinyDistillError(f"{path}: no tensor {name!r}; not the weights of a {model_type} student "
                               "as its config.json describes")
    if weights[name].shape != shape:
        raise TinyDistillError(f"{path}: tensor {name!r} has shape {weights[name].shape}, config.json implies "
                               f"{shape}")
    return weights[name]


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _table(embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """`embedding @ weight.T + bias` for every word, in float64 then float32: a linear layer on a looked-up
    embedding is a lookup in this table, which is exact up to one rounding and skips the matmul per token."""
    return (embedding.astype(np.float64) @ weight.T.astype(np.float64) + bias).astype(np.float32)


class _CBoW:
    """Mean of the word embeddings (empty text: zeros), then Linear, ReLU, Linear."""

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, hidden, k = c["vocab_size"], c["embed_dim"], c["hidden_dim"], c["n_classes"]
        self.embedding = _need(w, "embedding.weight", (vocab, dim), path, "cbow")
        self.w1 = _need(w, "ffn.0.weight", (hidden, dim), path, "cbow").T.copy()
        self.b1 = _need(w, "ffn.0.bias", (hidden,), path, "cbow")
        self.w2 = _need(w, "ffn.3.weight", (k, hidden), path, "cbow").T.copy()
        self.b2 = _need(w, "ffn.3.bias", (k,), path, "cbow")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        # one zero row at the end lets reduceat take a start index equal to len(ids) (trailing empty texts)
        vectors = np.concatenate([self.embedding[ids], np.zeros((1, self.embedding.shape[1]), np.float32)])
        sums = np.add.reduceat(vectors, _starts(lengths), axis=0)
        sums[lengths == 0] = 0.0  # reduceat gives the next row for an empty segment
        means = sums / np.maximum(lengths, 1)[:, None].astype(np.float32)
        hidden = np.maximum(means @ self.w1 + self.b1, 0)
        return hidden @ self.w2 + self.b2


class _BiLSTM:
    """Stacked bidirectional LSTM with PyTorch's packed-sequence semantics, then a linear layer on
    concat(last forward state, last backward state) of the top layer.

    All sequences of a batch advance in lockstep, sorted by falling length, so the rows still running at step
    t are a prefix (PyTorch's PackedSequence layout): no masks, no work on padding. The backward direction of
    each row starts at its own last token. An empty text is read as one [PAD] token (`lengths.clamp(min=1)`).
    """

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, h, layers, k = c["vocab_size"], c["embed_dim"], c["hidden_dim"], c["num_layers"], c["n_classes"]
        self.hidden, self.layers = h, layers
        embedding = _need(w, "embedding.weight", (vocab, dim), path, "bilstm")
        # torch's gate rows are i, f, g, o; reorder to i, f, o, g so one slice takes the three sigmoids, and halve
        # their rows: sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so a single tanh serves all four gates (x0.5 is exact)
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]
        half = np.r_[np.full(3 * h, 0.5), np.ones(h)].astype(np.float32)
        self.w_in, self.w_hh = [], []
        for layer in range(layers):
            in_dim = dim if layer == 0 else 2 * h
            w_ih, bias, w_hh = [], [], []
            for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
                name = f"lstm.{{}}{suffix}"
                w_ih.append(_need(w, name.format("weight_ih"), (4 * h, in_dim), path, "bilstm")[order] * half[:, None])
                w_hh.append(_need(w, name.format("weight_hh"), (4 * h, h), path, "bilstm")[order] * half[:, None])
                bias.append((_need(w, name.format("bias_ih"), (4 * h,), path, "bilstm")
                             + _need(w, name.format("bias_hh"), (4 * h,), path, "bilstm"))[order] * half)
            if layer == 0:  # the first layer's input projection becomes a per-word table (2, vocab, 4H)
                self.table = np.stack([_table(embedding, w_ih[d], bias[d]) for d in range(2)])
            else:  # (2H + 1, 8H): both directions in one matmul; the last row is the bias (inputs end in a 1)
                self.w_in.append(np.concatenate([np.concatenate(w_ih).T, np.concatenate(bias)[None]]))
            self.w_hh.append(np.stack([m.T for m in w_hh]))  # (2, H, 4H) for a batched matmul per step
        self.w_out = _need(w, "out.weight", (k, 2 * h), path, "bilstm").T.copy()
        self.b_out = _need(w, "out.bias", (k,), path, "bilstm")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        starts = _starts(lengths)
        if (lengths == 0).any():
            ids = np.insert(ids, starts[lengths == 0], 0)
            lengths = np.maximum(lengths, 1)
            starts = _starts(lengths)
        order = np.argsort(-lengths, kind="stable")
        ls = lengths[order]
        active = (ls[None, :] > np.arange(int(ls[0]))[:, None]).sum(1)  # rows still running at each step
        offsets = _starts(active)
        # the packed index of (step t, sorted row r) is offsets[t] + r; `rev` maps the packed index of token p of
        # a row to that of its token len-1-p, which is where the backward direction reads token p
        rows = np.repeat(np.arange(len(ls)), ls)
        pos = np.arange(len(rows)) - np.repeat(_starts(ls), ls)
        fwd = offsets[pos] + rows
        packed = np.empty_like(ids)
        packed[fwd] = ids[np.repeat(starts[order], ls) + pos]
        rev = np.empty_like(fwd)
        rev[fwd] = offsets[np.repeat(ls, ls) - 1 - pos] + rows

        h4 = 4 * self.hidden
        # step t reads rows idx[o:o+n] of each source (rows o:o+n where idx is None)
        inputs: tuple[tuple[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]
        inputs = (self.table[0], packed), (self.table[1], packed[rev])
        for layer in range(self.layers):
            top = layer + 1 == self.layers
            out, h = self._recur(inputs, self.w_hh[layer], active, offsets, rev, len(ls), keep=not top)
            if not top:
                proj = out @ self.w_in[layer]
                inputs = (proj[:, :h4], None), (proj[:, h4:], rev)
        logits = np.empty((len(ls), self.b_out.shape[0]), np.float32)
        logits[order] = np.concatenate([h[0], h[1]], axis=1) @ self.w_out + self.b_out
        return logits

    def _recur(self, inputs, w_hh: np.ndarray, active: np.ndarray, offsets: np.ndarray, rev: np.ndarray,
               batch: int, keep: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """Both directions of one layer. Returns the outputs in forward packed order as (tokens, 2H + 1) rows
        [forward h, backward h of the same token, 1] (the next layer's input), and the last states (2, batch, H).
        """
        hid = self.hidden
        h = np.zeros((2, batch, hid), np.float32)
        c = np.zeros_like(h)
        out = None
        if keep:
            out = np.empty((len(rev), 2 * hid + 1), np.float32)
            out[:, -1] = 1.0
        (src_f, idx_f), (src_b, idx_b) = inputs
        for n, o in zip(active.tolist(), offsets.tolist(), strict=True):
            g = h[:, :n] @ w_hh
            g[0] += src_f[o:o + n] if idx_f is None else src_f[idx_f[o:o + n]]
            g[1] += src_b[idx_b[o:o + n]]
            np.tanh(g, out=g)
            sig = g[..., :3 * hid]
            sig *= 0.5
            sig += 0.5
            cn = c[:, :n]
            cn *= sig[..., hid:2 * hid]
            cn += sig[..., :hid] * g[..., 3 * hid:]
            hn = h[:, :n]
            np.multiply(sig[..., 2 * hid:], np.tanh(cn), out=hn)
            if out is not None:
                out[o:o + n, :hid] = hn[0]
                out[rev[o:o + n], hid:2 * hid] = hn[1]
        return out, h  # rows leave the prefix when they end, so h holds each row's last state


class _CNN:
    """Kim's CNN: for each window width, max over time of relu(conv), then a linear layer.

    Each text is read as if alone, as the torch module does: padded with [PAD] to the widest window when
    shorter, and no window that starts past its end counts.
    Every conv is a sum of per-word tables: window w at t is `bias + sum_k table_k[ids[t + k]]`.
    """

    def __init__(self, w: dict, c: dict, path: Path):
        vocab, dim, f, k = c["vocab_size"], c["embed_dim"], c["filters"], c["n_classes"]
        windows = [int(x) for x in c["windows"]]
        embedding = _need(w, "embedding.weight", (vocab, dim), path, "cnn")
        # widths in rising order, so the windows that still cover offset k are a contiguous block of columns
        by_width = np.argsort(windows, kind="stable")
        self.widths = np.array([windows[j] for j in by_width])
        self.filters, self.min_len = f, max(windows)
        convs = [_need(w, f"convs.{j}.weight", (f, dim, windows[j]), path, "cnn") for j in by_width]
        bias = np.concatenate([_need(w, f"convs.{j}.bias", (f,), path, "cnn") for j in by_width])
        self.first = []  # first column block that offset k contributes to
        self.tables = []
        for offset in range(self.min_len):
            first = int(np.searchsorted(self.widths, offset, side="right"))
            weight = np.concatenate([conv[:, :, offset] for conv in convs[first:]])
            self.first.append(first * f)
            self.tables.append(_table(embedding, weight, bias if offset == 0 else 0.0))
        out = _need(w, "out.weight", (k, f * len(windows)), path, "cnn")
        columns = np.concatenate([np.arange(j * f, (j + 1) * f) for j in by_width])
        self.w_out = out[:, columns].T.copy()
        self.b_out = _need(w, "out.bias", (k,), path, "cnn")

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        padded = np.maximum(lengths, self.min_len)  # every filter fires at least once
        starts = _starts(padded)
        total = int(padded.sum())
        flat = np.zeros(total + self.min_len, np.int64)  # trailing [PAD]s keep the shifted views in range
        pos = np.arange(len(ids)) - np.repeat(_starts(lengths), lengths)
        flat[np.repeat(starts, lengths) + pos] = ids
        acc = self.tables[0][flat[:total]]
        for offset in range(1, self.min_len):
            acc[:, self.first[offset]:] += self.tables[offset][flat[offset:offset + total]]
        np.maximum(acc, 0, out=acc)
        # windows that would run past their text: zero is neutral here, since every value is >= 0 after relu
        left = np.repeat(starts + padded, padded) - np.arange(total)  # tokens from t to the end of the text
        near_end = np.flatnonzero(left < self.min_len)
        blocks = acc[near_end].reshape(len(near_end), len(self.widths), self.filters)
        blocks[left[near_end, None] < self.widths[None, :]] = 0.0
        acc[near_end] = blocks.reshape(len(near_end), -1)
        pooled = np.maximum.reduceat(acc, starts, axis=0)
        return pooled @ self.w_out + self.b_out


FORWARDS = {"cbow": _CBoW, "bilstm": _BiLSTM, "cnn": _CNN}


# ----------------------------------------------------------------------------------------------- model


class Model:
    """A student ready to predict: vocabulary, labels and a numpy forward pass.

    Build it with `load(folder)`. `classes_` holds the labels (as saved: strings, or the integers a student was
    fit on) in the order of `predict_proba`'s columns; `predict` returns values of it.
    """

    def __init__(self, model_type: str, config: dict, classes: Sequence, vocab: Vocabulary, forward,
                 meta: dict | None = None):
        self.model_type = model_type
        self.config = config
        self.classes_ = np.asarray(classes)
        self.vocab = vocab
        self.encoder = Encoder(vocab)
        self.forward = forward
        self.meta = meta or {}
        self.temperature = float(self.meta.get("temperature", 1.0))  # fitted after distillation (calibration)

    def logits(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """Raw scores, shape (n, classes), float32; `batch_size` texts (at most `MAX_TOKENS` tokens) a pass."""
        return self._run(texts, batch_size, rates=False)[0]

    def _run(self, texts: Sequence[str], batch_size: int, rates: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(logits, unknown-word rate of each text, or zeros without `rates`), from one tokenisation."""
        check_texts(texts)
        out = np.empty((len(texts), len(self.classes_)), np.float32)
        unknown = np.zeros(len(texts), np.float64)
        for start in range(0, len(texts), batch_size):
            ids, lengths = self.encoder(texts[start:start + batch_size])
            if rates:  # off for `logits`, the path that throughput is measured on
                unknown[start:start + len(lengths)] = self.encoder.unknown_rate(ids, lengths)
            for a, b in _chunks(lengths, MAX_TOKENS):
                first, last = int(lengths[:a].sum()), int(lengths[:b].sum())
                out[start + a: start + b] = self.forward(ids[first:last], lengths[a:b])
        return out, unknown

    def predict_proba(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """Class probabilities, shape (n, len(classes_)): softmax of the logits divided by the temperature."""
        return softmax(self.logits(texts, batch_size), self.temperature)

    def unknown_rate(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the share of the tokens the student reads that are not in its vocabulary (1.0 when empty)."""
        return self.encoder.unknown_rate(*self.encoder(texts))

    def predictions(self, texts: Sequence[str], min_confidence: float | None = None,
                    max_unknown: float | None = None, batch_size: int = 1024) -> list[dict]:
        """What `predict` and `serve` answer, one dict per text: `label` (None when abstaining), `probabilities`
        (label -> probability), `unknown_rate`, and `reason` (why it abstained, else None). Labels are named as
        strings here, as JSON keys and the output files have them.

        It abstains when the top probability is under `min_confidence` or the unknown-word rate is over
        `max_unknown` (None: never).
        """
        check_abstain(min_confidence, max_unknown)
        scores, rates = self._run(texts, batch_size)
        if not np.isfinite(scores).all():  # a damaged model: JSON has no NaN, and a null is no answer
            raise TinyDistillError("the model gave NaN or infinite scores; its weights are damaged")
        out, names = [], self.classes_.astype(str).tolist()
        for row, rate in zip(softmax(scores, self.temperature).tolist(), rates.tolist(), strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            reasons = []
            if max_unknown is not None and rate > max_unknown:
                reasons.append(f"{rate:.0%} of its words are unknown to the model (over {max_unknown:.0%})")
            if min_confidence is not None and row[best] < min_confidence:
                reasons.append(f"top probability {row[best]:.2f} is under {min_confidence:.2f}")
            out.append({"label": None if reasons else names[best],
                        "probabilities": dict(zip(names, row, strict=True)), "unknown_rate": rate,
                        "reason": "; ".join(reasons) or None})
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """The most probable label of each text, an array of values of `classes_` (one string: a TypeError)."""
        return self.classes_[self.logits(texts, batch_size).argmax(1)]

    def metadata(self) -> dict:
        """What a client needs to know: type, labels, sizes, tokenizer settings, export format, provenance."""
        export = dict(self.meta.get("export", {"format": "student"}))
        if "source" in export:  # older exports recorded the absolute path they came from: show its name only
            export["source"] = Path(str(export["source"])).name
        return {"model_type": self.model_type, "labels": self.classes_.astype(str).tolist(), "config": self.config,
                "temperature": self.temperature,
                "tokenizer": self.vocab.config_dict(), "vocab_size": len(self.vocab), "export": export,
                "provenance": self.meta.get("provenance", {})}


def _chunks(lengths: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Row ranges whose tokens add up to at most `max_tokens` (a longer single text gets its own range)."""
    if int(lengths.sum()) <= max_tokens:
        return [(0, len(lengths))]
    out, begin, total = [], 0, 0
    for i, n in enumerate(lengths.tolist()):
        if total + n > max_tokens and i > begin:
            out.append((begin, i))
            begin, total = i, 0
        total += n
    out.append((begin, len(lengths)))
    return out


def load(folder: str | os.PathLike) -> Model:
    """Read a student folder (`Student.save_pretrained`), an exported one (`tinydistill export`), or a Hub
    repo id (`org/name`, through huggingface_hub and its local cache; a local folder of that name wins).

    Errors are `TinyDistillError`s with one line that names the file at fault.
    """
    from tinydistill.hub import resolve

    folder = resolve(folder)
    meta = read_config(folder)
    config_path = folder / "config.json"
    try:
        vocab = Vocabulary.load(folder, meta.get("tokenizer"))
    except TypeError as exc:
        raise TinyDistillError(f"{config_path}: bad 'tokenizer' settings ({exc})") from None
    except TinyDistillError as exc:
        raise TinyDistillError(str(exc) if str(folder) in str(exc) else f"{folder / 'vocab.txt'}: {exc}") from None
    weights_path = folder / WEIGHTS
    weights = load_weights(weights_path)
    config = dict(meta["config"])
    labels = meta["labels"]  # strings, or the integers a student was fit on: predict returns them as they were
    if config.get("n_classes") != len(labels):
        raise TinyDistillError(f"{config_path}: {len(labels)} labels but n_classes is {config.get('n_classes')}")
    if len(vocab) != config.get("vocab_size"):
        raise TinyDistillError(f"{folder / 'vocab.txt'}: {len(vocab)} words but config.json says vocab_size "
                               f"{config.get('vocab_size')}")
    try:
        forward = FORWARDS[meta["model_type"]](weights, config, weights_path)
    except (KeyError, TypeError) as exc:
        raise TinyDistillError(f"{config_path}: missing or bad {meta['model_type']} setting ({exc})") from None
    check_hashes(folder, meta.get("sha256"), config_path)  # last: a truncated or misshapen file says so first
    return Model(meta["model_type"], config, labels, vocab, forward, meta)


__all__ = ["FORMAT", "MODEL_TYPES", "Encoder", "Model", "check_abstain", "load", "load_weights", "log_softmax",
           "read_config", "softmax"]
