"""The data of one run (`Task`): the labels the teacher sees, the unlabelled transfer set, the test split, loaded
and checked from what a `RunConfig` names (`load_task`); `read_transfer` reads one transfer source.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinydistill import data as data_mod
from tinydistill.config import RunConfig
from tinydistill.errors import TinyDistillError
from tinydistill.pools import read_pool
from tinydistill.shards import LogitShards, is_logit_folder

log = logging.getLogger(__name__)


@dataclass
class Task:
    """The data of one run: the labels the teacher sees, the unlabelled transfer set, the test split."""

    labeled: data_mod.Split
    transfer: list[str]
    test: data_mod.Split
    metric: str
    shards: list[str] = field(default_factory=list)  # logit shard folders (`label --out DIR`), streamed by `run`
    spare: data_mod.Split | None = None  # labelled training texts outside `labeled`: the teacher never sees them


def load_task(c: RunConfig, transfer: bool = True) -> Task:
    """Load and check the data named by the config; errors name the file, line or column.

    `transfer=False` skips the unlabelled splits and pools (a teacher alone needs none): the transfer set is
    then the training split's texts (what a self-training teacher draws from)."""
    if c.data in data_mod.PAPER_DATASETS:
        spec = data_mod.PAPER_DATASETS[c.data]
        train = data_mod.load_paper_dataset(c.data, spec.train, c.data_dir)
        test = (data_mod.load(c.test, None, c.data_dir, c.text_column, c.label_column, train.label_names)
                if c.test and Path(c.test).suffix else data_mod.load_paper_dataset(c.data, c.test or spec.test,
                                                                                     c.data_dir))
        extra = [t for s in spec.unlabeled if transfer
                 for t in data_mod.load_paper_dataset(c.data, s, c.data_dir).texts]
        metric, size = spec.metric, spec.labeled if c.labeled is None else c.labeled
    else:
        train = data_mod.load(c.data, "train", c.data_dir, c.text_column, c.label_column)
        if c.test:
            test = data_mod.load(c.test, c.test if not Path(c.test).suffix else None, c.data_dir,
                                 c.text_column, c.label_column, train.label_names)
        else:
            if train.labels is None:
                raise TinyDistillError(f"{train.source}: no labels")
            test, train = data_mod.stratified_sample(train, max(len(train) // 5, len(set(train.labels))), c.seed)
            log.info("no --test given: holding out %d of %s for testing", len(test), train.source)
        extra, metric = [], "f1"
        size = len(train) if c.labeled is None else c.labeled
    data_mod.check_trainable(train)
    data_mod.check_every_class(train)
    test = data_mod.align_labels(test, train.label_names)
    if c.test_size is not None and c.test_size < len(test):
        test = data_mod.stratified_sample(test, c.test_size, 0)[0]
    labeled, spare = (train, None) if size == len(train) else data_mod.stratified_sample(train, size, c.seed)
    data_mod.check_trainable(labeled)
    texts = list(train.texts) + extra
    logit_folders = []
    for source in c.transfer if transfer else ():
        if is_logit_folder(source):  # labelled already: `run` streams them when its teacher wrote them
            logit_folders.append(source)
            continue
        texts += read_transfer(source, c.text_column)
    if c.transfer_size is not None and c.transfer_size < len(texts):
        keep = np.sort(np.random.default_rng(c.seed).choice(len(texts), c.transfer_size, replace=False))
        texts = [texts[i] for i in keep]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TinyDistillError(f"{train.source}: the transfer set is empty")
    return Task(labeled, texts, test, metric, shards=logit_folders, spare=spare)


def read_transfer(source: str, text_column: str = "text") -> list[str]:
    """Unlabelled texts from an augmentation pool folder, a plain text file (one text a line) or a
    CSV/TSV/JSONL/Parquet file (its `text_column`)."""
    path = Path(source)
    if is_logit_folder(source):
        return list(LogitShards(source).iter_texts())
    if path.is_dir():
        return read_pool(path)
    if not path.exists():
        raise TinyDistillError(f"{path}: transfer file not found")
    if path.name.endswith((".txt", ".txt.gz")):  # plain text: one text a line
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
                return [line.rstrip("\n") for line in handle if line.strip()]
        except UnicodeDecodeError as exc:
            raise TinyDistillError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise TinyDistillError(f"{path}: not a readable {'gzip' if path.suffix == '.gz' else 'text'} file "
                                   f"({exc})") from None
    return data_mod.load_file(path, text_column=text_column, label_column=None).texts
