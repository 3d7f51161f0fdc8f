"""Scores, sizes and speeds, measured the same way for teacher, students and peers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


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
