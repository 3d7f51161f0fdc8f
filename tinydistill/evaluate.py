"""Scores, sizes and speeds, measured the same way for teacher, students and peers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tinydistill.runtime import log_softmax


def scores(gold: ArrayLike, predicted: ArrayLike, n_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1, MCC, and the positive-class F1 (class 1) when there are two classes."""
    y_true, y_pred = np.asarray(gold), np.asarray(predicted)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=list(range(n_classes)),
                                   zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }
    if n_classes == 2:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=0))
    return out


def headline(metric: str, result: dict) -> float:
    """The paper's number for a dataset: MCC for CoLA, F1 otherwise (macro-F1 beyond two classes)."""
    if metric == "mcc":
        return result["mcc"]
    return result.get("f1", result["macro_f1"])


def throughput(predict: Callable[[list[str]], object], texts: Sequence[str], batch_size: int = 256,
               min_seconds: float = 1.0, max_texts: int = 20_000) -> float:
    """Texts per second through `predict`, fed in batches of `batch_size`, over at least `min_seconds`."""
    texts = list(texts[:max_texts])
    predict(texts[:batch_size])  # warm-up: first calls allocate
    done, started = 0, time.perf_counter()
    while True:
        for start in range(0, len(texts), batch_size):
            predict(texts[start: start + batch_size])
        done += len(texts)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def latency(predict: Callable[[list[str]], object], texts: Sequence[str], n: int = 200,
            max_seconds: float = 10.0) -> float:
    """Median seconds for one text at a time (batch 1), over up to `n` texts or `max_seconds`."""
    predict([texts[0]])
    times: list[float] = []
    started = time.perf_counter()
    for text in list(texts[:n]):
        t = time.perf_counter()
        predict([text])
        times.append(time.perf_counter() - t)
        if time.perf_counter() - started > max_seconds:
            break
    return float(np.median(times))


def ece(gold: ArrayLike, proba: ArrayLike, bins: int = 15) -> float:
    """Expected calibration error of the top label: over `bins` equal-width confidence bins (0, 1/bins], ...,
    the gap |accuracy - mean confidence| of each bin weighted by its share of the texts (Guo et al., 2017)."""
    y, p = np.asarray(gold), np.asarray(proba, dtype=np.float64)
    if len(y) == 0:
        return 0.0
    confidence, hit = p.max(1), (p.argmax(1) == y).astype(np.float64)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins the first bin
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.abs(np.bincount(which, hit, bins) - np.bincount(which, confidence, bins))  # n_b |acc_b - conf_b|
    return float(gap.sum() / len(y))


def agreement(a: ArrayLike, b: ArrayLike) -> float:
    """Share of texts on which two models predict the same class (e.g. a student and its teacher)."""
    x, y = np.asarray(a), np.asarray(b)
    return float((x == y).mean()) if len(x) else 0.0


def chance(metric: str, gold: ArrayLike, n_classes: int) -> float:
    """The score of the best constant predictor on `gold` for `metric`: MCC 0; accuracy, the largest class's
    share; binary F1, the positive-class F1 of always answering positive; else the macro-F1 of always answering
    the class that scores best."""
    if metric == "mcc":
        return 0.0
    y = np.asarray(gold, dtype=np.int64)
    share = np.bincount(y, minlength=n_classes) / max(len(y), 1)
    if metric == "accuracy":
        return float(share.max())
    if n_classes == 2:
        return float(2 * share[1] / (1 + share[1]))  # precision = share, recall = 1
    return float(np.max(2 * share / (1 + share)) / n_classes)  # that class's F1; every other class scores 0


def fit_temperature(logits: ArrayLike, target: ArrayLike) -> float:
    """The temperature T that minimises the cross-entropy of softmax(logits / T) against `target`: class
    indices (n,) or probabilities (n, classes). Searched over log T in [1/100, 100] (a 1-D convex problem)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target)
    q = np.eye(z.shape[1])[t.astype(np.int64)] if t.ndim == 1 else t.astype(np.float64)
    if len(z) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return float(-(q * log_softmax(z, np.exp(log_t))).sum(1).mean())

    found = minimize_scalar(loss, bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))
