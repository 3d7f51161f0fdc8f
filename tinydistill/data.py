"""Datasets: a user's file, the paper's five datasets by name, or any Hugging Face dataset id.

Everything comes back as a `Split` (texts, integer labels, label names). Loading by name or path happens
here, at the edge; the rest of the package only sees `Split` objects.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinydistill.errors import TinyDistillError

log = logging.getLogger(__name__)

DATA_ENV = "TINYDISTILL_DATA"
MAX_FIELD = 1 << 28  # characters in one CSV field


@dataclass
class Split:
    """Texts with optional integer labels that index `label_names`."""

    texts: list[str]
    labels: list[int] | None
    label_names: list[str]
    source: str = ""  # where it came from, for error messages and the results table

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class PaperDataset:
    """Where one of the paper's datasets lives and how the paper used it (its Table 1)."""

    train: str  # split the labelled sample and the default transfer set come from
    test: str  # the split the paper reports on
    labeled: int  # the paper's T-train size
    transfer: int  # the paper's S-train size
    metric: str  # the paper's headline metric: "f1" or "mcc"
    hub_id: str  # public hub id used when no data folder is set
    hub_config: str | None = None
    hub_splits: dict[str, str] = field(default_factory=dict)  # our split name -> hub split name
    unlabeled: tuple[str, ...] = ()  # extra unlabelled splits added to the transfer set


PAPER_DATASETS: dict[str, PaperDataset] = {
    "sst2": PaperDataset("train", "test", 200, 1_000_000, "f1", "SetFit/sst2",
                         hub_splits={"dev": "validation"}),
    "cola": PaperDataset("in_domain_train", "out_of_domain_dev", 1000, 1_000_000, "mcc", "nyu-mll/glue", "cola",
                         hub_splits={"in_domain_train": "train", "in_domain_dev": "validation",
                                     "out_of_domain_dev": "validation"}),
    "emotion": PaperDataset("train", "test", 1000, 50_000, "f1", "dair-ai/emotion", "split"),
    "agnews": PaperDataset("train", "test", 400, 20_000, "f1", "fancyzhx/ag_news"),
    "imdb": PaperDataset("train", "test", 1000, 25_000, "f1", "stanfordnlp/imdb",
                         hub_splits={"unsup": "unsupervised"}, unlabeled=("unsup",)),
}


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data folder laid out like shared/data: the option, else $TINYDISTILL_DATA, else None (hub)."""
    chosen = explicit or os.environ.get(DATA_ENV)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise TinyDistillError(f"{path}: data folder not found (set --data-dir or ${DATA_ENV})")
    return path


# ---------------------------------------------------------------------------------------------- files


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """Column names and rows of a CSV/TSV/JSONL/Parquet file (optionally gzipped)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise TinyDistillError(f"{path}: not a readable Parquet file ({exc})") from None
        return table.column_names, table.to_pylist()
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    limit = csv.field_size_limit()
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, else the first column is "\ufefftext"
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:  # type: ignore[operator]
            if kind in (".jsonl", ".json", ".ndjson"):
                rows = []
                for number, row in iter_json_lines(handle, str(path)):
                    if not isinstance(row, dict):
                        raise TinyDistillError(f"{path}:{number}: expected a JSON object per line")
                    rows.append(row)
                columns = list(rows[0]) if rows else []
                return columns, rows
            if kind not in (".csv", ".tsv", ".txt"):
                raise TinyDistillError(f"{path}: unknown file type {kind or '(none)'}; "
                                       "expected .csv, .tsv, .jsonl or .parquet")
            if kind == ".tsv":
                reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.DictReader(handle)
            csv.field_size_limit(MAX_FIELD)  # the default 128 KB refuses a long review; a whole book still fits
            try:
                columns, rows = list(reader.fieldnames or []), []
                for row in reader:  # more fields than the header: a text holding the delimiter, which was cut
                    extra = list(row.get(None) or [])  # type: ignore[call-overload]  # DictReader keeps them under None
                    if any(extra):
                        where = f"{path}:{reader.line_num}: {len(columns) + len(extra)} fields where the header has " \
                                f"{len(columns)}"
                        raise TinyDistillError(f"{where}; a text holding a tab cannot be in a .tsv: save it as .csv "
                                               "or .jsonl" if kind == ".tsv" else
                                               f"{where}; put a text holding a comma in double quotes")
                    rows.append(row)
                return columns, rows
            except csv.Error as exc:
                raise TinyDistillError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise TinyDistillError(f"{path}: byte {exc.start} is not valid UTF-8; re-save the file as UTF-8") from None
    except FileNotFoundError:
        raise TinyDistillError(f"{path}: file not found") from None
    except (OSError, EOFError) as exc:  # a folder, no permission, a damaged gzip file
        raise TinyDistillError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        csv.field_size_limit(limit)


def iter_json_lines(handle: Iterable[str], where: str) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line of a JSON Lines stream; a bad line is a one-line error."""
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise TinyDistillError(f"{where}:{number}: not valid JSON ({exc.msg})") from None


def load_file(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str | None = "label",
    label_names: Sequence[str] | None = None,
) -> Split:
    """Read a user's CSV, TSV, JSON Lines or Parquet file.

    Labels may be strings or integers. With `label_names` given, string labels must be among them and
    integers index them; otherwise the names are the sorted distinct labels. `label_column=None` (or a
    file without that column and an empty label) reads unlabelled text.
    """
    path = Path(path)
    if not path.exists():
        raise TinyDistillError(f"{path}: file not found")
    if path.is_dir():
        raise TinyDistillError(f"{path}: a folder; expected a .csv, .tsv, .jsonl or .parquet file")
    columns, rows = _read_rows(path)
    if not rows:
        raise TinyDistillError(f"{path}: no rows; expected a header and at least one example")
    if text_column not in columns:
        raise TinyDistillError(f"{path}: no column {text_column!r}; columns are {columns}")
    texts = []
    for number, row in enumerate(rows, 2):
        text = row.get(text_column)
        if text is None or not str(text).strip():
            raise TinyDistillError(f"{path}:{number}: empty text in column {text_column!r}")
        texts.append(str(text))
    if label_column is None:
        return Split(texts, None, list(label_names or []), str(path))
    if label_column not in columns:
        raise TinyDistillError(f"{path}: no column {label_column!r}; columns are {columns} "
                               "(use --label-column, or none for unlabelled text)")
    raw = [row.get(label_column) for row in rows]
    if all(value is None or str(value).strip() == "" for value in raw):
        return Split(texts, None, list(label_names or []), str(path))
    labels, names = encode_labels(raw, label_names, where=str(path), first_line=2)
    return Split(texts, labels, names, str(path))


def encode_labels(
    raw: Sequence[object], label_names: Sequence[str] | None, where: str, first_line: int = 1
) -> tuple[list[int], list[str]]:
    """Map raw labels (strings or integers) to indices into label names; one-line errors name the row."""
    values = []
    for number, value in enumerate(raw, first_line):
        if value is None or str(value).strip() == "":
            raise TinyDistillError(f"{where}:{number}: missing label")
        values.append(str(value).strip())
    if label_names is None:
        if all(v.lstrip("-").isdigit() for v in values):
            names = [str(v) for v in sorted({int(v) for v in values})]
        else:
            names = sorted(set(values))
    else:
        names = list(label_names)
    index = {name: i for i, name in enumerate(names)}
    labels = []
    for number, value in enumerate(values, first_line):
        if value in index:
            labels.append(index[value])
        elif label_names is not None and value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
            labels.append(int(value))
        else:
            raise TinyDistillError(f"{where}:{number}: unknown label {value!r}; expected one of {names}")
    return labels, names


# -------------------------------------------------------------------------------- the paper's datasets


def load_paper_dataset(name: str, split: str | None = None, data_dir: str | os.PathLike | None = None) -> Split:
    """One split of a paper dataset (`sst2`, `cola`, `emotion`, `agnews`, `imdb`).

    From the data folder (`data_dir`, else $TINYDISTILL_DATA) when set, else from the Hugging Face hub.
    `split=None` means the split the paper reports on.
    """
    if name not in PAPER_DATASETS:
        raise TinyDistillError(f"unknown dataset {name!r}; expected one of {sorted(PAPER_DATASETS)} "
                               "or a file path or a hub id")
    spec = PAPER_DATASETS[name]
    split = split or spec.test
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return load_hub(spec.hub_id, spec.hub_splits.get(split, split), config=spec.hub_config,
                        unlabeled=split in spec.unlabeled)
    base = folder / name
    path = base / f"{split}.tsv.gz"
    if not path.exists():
        available = sorted(p.name.removesuffix(".tsv.gz") for p in base.glob("*.tsv.gz"))
        raise TinyDistillError(f"{path}: split {split!r} not found; available: {available}")
    try:
        names = json.loads((base / "labels.json").read_text(encoding="utf-8"))["labels"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TinyDistillError(f"{base / 'labels.json'}: expected {{\"labels\": [...]}} ({exc})") from None
    texts: list[str] = []
    labels: list[int] = []
    number = 1
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            header = handle.readline()
            if header.rstrip("\n") != "text\tlabel":
                raise TinyDistillError(f"{path}:1: expected header 'text<TAB>label'")
            for number, line in enumerate(handle, 2):
                text, sep, label = line.rstrip("\n").rpartition("\t")
                if not sep or not (label == "" or label.lstrip("-").isdigit()):
                    raise TinyDistillError(f"{path}:{number}: expected 'text<TAB>label'")
                texts.append(text)
                if label:
                    labels.append(int(label))
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a damaged download
        raise TinyDistillError(f"{path}:{number}: not a readable gzip file of UTF-8 text ({exc})") from None
    if labels and len(labels) != len(texts):
        raise TinyDistillError(f"{path}: some rows have labels and some do not")
    return Split(texts, labels or None, names, f"{name}/{split}")


def load_hub(
    dataset_id: str,
    split: str,
    config: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    unlabeled: bool = False,
) -> Split:
    """A split of a Hugging Face dataset through the ordinary `datasets` loading code."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # the hub client raises many types (offline, missing, bad split)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TinyDistillError(f"{dataset_id} ({split}): could not load from the hub: {first}") from None
    return split_from_hf(ds, f"{dataset_id}/{split}", text_column, label_column, unlabeled)


def split_from_hf(ds, source: str, text_column: str = "text", label_column: str = "label",
                  unlabeled: bool = False) -> Split:
    """Turn an in-memory `datasets.Dataset` into a `Split`, using its ClassLabel names when it has them."""
    if "sentence" in ds.column_names and text_column not in ds.column_names:
        text_column = "sentence"  # GLUE names its text column so
    if text_column not in ds.column_names:
        raise TinyDistillError(f"{source}: no column {text_column!r}; columns are {ds.column_names}")
    texts = [str(t) for t in ds[text_column]]
    if unlabeled or label_column not in ds.column_names:
        return Split(texts, None, [], source)
    feature = ds.features[label_column]
    names = list(getattr(feature, "names", None) or [])
    raw = ds[label_column]
    if names:
        labels = [int(v) for v in raw]
        if any(v < 0 for v in labels):  # hub test splits without labels use -1
            return Split(texts, None, names, source)
        return Split(texts, labels, names, source)
    labels, names = encode_labels(raw, None, where=source)
    return Split(texts, labels, names, source)


def load(source: str, split: str | None = None, data_dir: str | os.PathLike | None = None,
         text_column: str = "text", label_column: str | None = "label",
         label_names: Sequence[str] | None = None) -> Split:
    """Load by what `source` names: a paper dataset, an existing file, or a hub dataset id."""
    if source in PAPER_DATASETS:
        return load_paper_dataset(source, split, data_dir)
    if Path(source).suffix or Path(source).exists():
        return load_file(source, text_column, label_column, label_names)
    return load_hub(source, split or "train", text_column=text_column, label_column=label_column or "label")


# ------------------------------------------------------------------------------------------ sampling


def stratified_sample(split: Split, size: int, seed: int = 0) -> tuple[Split, Split]:
    """A seeded sample of `size` labelled examples keeping class proportions, and the rest.

    Every class gets at least one example. The rest (labels kept) is returned so callers can use it as
    the transfer set without leaking the sample into it.
    """
    if split.labels is None:
        raise TinyDistillError(f"{split.source}: has no labels to sample from")
    n = len(split.labels)
    classes = sorted(set(split.labels))
    if size > n:
        raise TinyDistillError(f"{split.source}: {size} labels requested but only {n} labelled examples exist")
    if size < len(classes):
        raise TinyDistillError(f"{split.source}: {size} labels cannot cover {len(classes)} classes")
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    # largest-remainder allocation, at least one per class
    exact = np.array([len(by_class[c]) for c in classes], dtype=float) * size / n
    take = np.maximum(np.floor(exact).astype(int), 1)
    order = np.argsort(-(exact - np.floor(exact)))
    i = 0
    while take.sum() < size:
        c = order[i % len(classes)]
        if take[c] < len(by_class[classes[c]]):
            take[c] += 1
        i += 1
    while take.sum() > size:
        c = int(np.argmax(take))
        take[c] -= 1
    chosen = np.sort(np.concatenate([by_class[c][:k] for c, k in zip(classes, take)]))
    chosen = rng.permutation(chosen)
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    rest = np.flatnonzero(~mask)
    pick = Split([split.texts[i] for i in chosen], [split.labels[i] for i in chosen], split.label_names,
                 f"{split.source}[{size} sampled, seed {seed}]")
    other = Split([split.texts[i] for i in rest], [split.labels[i] for i in rest], split.label_names,
                  f"{split.source}[rest]")
    return pick, other


def check_trainable(split: Split) -> None:
    """Refuse data a classifier cannot learn from, with the reason and the place."""
    if len(split) == 0:
        raise TinyDistillError(f"{split.source}: empty dataset")
    if split.labels is None:
        raise TinyDistillError(f"{split.source}: no labels")
    if len(set(split.labels)) < 2:
        only = split.label_names[split.labels[0]] if split.label_names else split.labels[0]
        raise TinyDistillError(f"{split.source}: every example has the label {only!r}; need at least 2 classes")
    for i, text in enumerate(split.texts):
        if not text.strip():
            raise TinyDistillError(f"{split.source}: example {i} has an empty text")


def check_every_class(train: Split, held_out: Split | None = None) -> None:
    """Refuse training data that lacks a class of its label names (a class too small to hold one example out
    for testing and keep one for training, typically), naming the class and its count."""
    present = set(train.labels or [])
    for k, name in enumerate(train.label_names):
        if k not in present:
            where = "" if held_out is None else f" ({sum(1 for y in held_out.labels or [] if y == k)} held out)"
            raise TinyDistillError(f"{train.source}: no training example of class {name!r}{where}; a class with "
                                   "one example cannot be both trained on and tested: add examples, or give --test")


def align_labels(test: Split, label_names: Sequence[str]) -> Split:
    """Re-index a test split onto the training label names; an unseen label is an error naming it."""
    if test.labels is None:
        raise TinyDistillError(f"{test.source}: the evaluation split has no labels")
    if list(test.label_names) == list(label_names):
        return test
    index = {name: i for i, name in enumerate(label_names)}
    labels = []
    for row, label in enumerate(test.labels):
        name = test.label_names[label] if test.label_names else str(label)
        if name not in index:
            raise TinyDistillError(f"{test.source}: row {row + 1} has label {name!r} that the training data "
                                   f"does not have; expected one of {list(label_names)}")
        labels.append(index[name])
    return Split(test.texts, labels, list(label_names), test.source)
