"""Torch-free inference: a saved or exported student predicts from raw text with numpy (and safetensors) alone.

>>> from tinydistill import runtime
>>> model = runtime.load("runs/sst2-200-s0/students/cbow")   # a student folder or an exported one
>>> model.predict(["a gorgeous, witty film"])                  # -> array(['positive'], dtype='<U8')
>>> model.predict_proba(["a gorgeous, witty film"])            # -> array([[0.03, 0.97]], dtype=float32)

The three students' forward passes are in `tinydistill.forwards` (numpy, on whole batches); this module tokenises,
batches, and turns their logits into probabilities and answers.
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
from tinydistill.forwards import FORWARDS
from tinydistill.labels import check_texts
from tinydistill.words import Vocabulary

FORMAT = STUDENT_FORMAT
MODEL_TYPES = ("cbow", "cbow-attn", "bilstm", "cnn")
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
