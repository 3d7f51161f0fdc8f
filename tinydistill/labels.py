"""Labels and texts as every model takes them (the model vocabulary of DEVELOPERS.md); numpy only.

`classes_` is an array of the labels (strings or numbers, as config.json's `"labels"` holds them), in the order
of the logits' columns; training maps each label to its column with `encode_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinydistill.errors import TinyDistillError


def check_texts(texts: Sequence[str]) -> None:
    """Every model's `predict`/`predict_proba`/`logits` take a list of texts; one string is refused, since it
    would be read as a list of one-character texts."""
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, not one string: pass [text] to classify a single text")


def encode_labels(y: np.ndarray, classes: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`classes_` and each label's index in it: `classes` in its order when given, else the sorted distinct labels.

    Labels are strings or numbers (what config.json's `labels` can hold); a label outside `classes` is an error."""
    y = np.asarray(y.tolist()) if y.dtype.kind == "O" else y  # a pandas column of strings, say
    classes_ = np.unique(y) if classes is None else np.asarray(list(classes))
    if classes_.dtype.kind not in "USiufb" or y.dtype.kind not in "USiufb":
        raise TinyDistillError("labels must be all strings or all numbers")
    found = np.unique(y)
    if len(classes_) < 2:
        raise TinyDistillError(f"labels {found.tolist()}: a classifier needs at least two classes")
    index = {c: i for i, c in enumerate(classes_.tolist())}
    unknown = [c for c in found.tolist() if c not in index]
    if unknown:
        raise TinyDistillError(f"label {unknown[0]!r} is not one of the classes {classes_.tolist()}")
    return classes_, np.array([index[c] for c in y.tolist()], dtype=np.int64)


def logit_classes(n_classes: int, classes: Sequence | None) -> np.ndarray:
    """The labels of `n_classes` logit columns: `classes`, else "0", "1", ..."""
    names = np.asarray(list(classes) if classes is not None else [str(i) for i in range(n_classes)])
    if len(names) != n_classes:
        raise TinyDistillError(f"{len(names)} classes for {n_classes} logit columns")
    return names
