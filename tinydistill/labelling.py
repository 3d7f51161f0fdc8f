"""The `label` stage on its own: a saved teacher's logits for a transfer set, into the JSON Lines transfer file
(`folders.write_transfer_file`) or a folder of Parquet logit shards (`shards.label_to_shards`, here or on Ray).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tinydistill.data import PAPER_DATASETS, align_labels, load, load_paper_dataset
from tinydistill.device import int8_guard, resolve_device
from tinydistill.errors import TinyDistillError
from tinydistill.folders import check_out_file, logit_cache_path, transfer_labels_path, write_transfer_file
from tinydistill.logitcache import LogitCache
from tinydistill.shards import label_to_shards
from tinydistill.task import read_transfer
from tinydistill.teacher import Teacher

log = logging.getLogger(__name__)


def label_precision(teacher: Teacher, precision: str, texts: list[str], labels: list[int],
                    cache: LogitCache, where: str = "training labels") -> tuple[Teacher, dict]:
    """The teacher to label with and the record of it; int8 only on the CPU, checked on up to 500 of the
    labelled texts (`device.int8_guard`); without labels it cannot be checked, so fp32 with a warning."""
    record = {"device": str(teacher.device), "precision": teacher.precision}
    if precision != "int8":
        return teacher, record
    if teacher.device.type != "cpu":
        log.warning("int8 labelling is for the CPU; on %s the teacher labels in %s", teacher.device, teacher.precision)
        return teacher, {**record, "requested": "int8"}
    if not labels:
        log.warning("int8 labelling needs labelled texts to check the int8 teacher against fp32 (--data a paper "
                    "dataset, or --check-data); labelling in fp32")
        return teacher, {**record, "requested": "int8", "checked_on": None}
    chosen, decision = int8_guard(teacher, texts, labels, cache, where=where)
    return chosen, {**record, **decision}


def label_file(teacher_dir: str, data: str, out: str, *, data_dir: str | None = None, text_column: str = "text",
               device: str = "auto", precision: str = "fp32", check: str | None = None,
               check_columns: tuple[str, str] | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Label `data` (a paper dataset's training split, a file or a pool folder; a file's `text_column`) with the
    teacher in `teacher_dir` into the transfer file `out` (.jsonl) and its `.labels.json`; returns a summary.

    int8 is checked against fp32 on `check` (a paper dataset's training split, or a file with `check_columns`, text
    and label, by default `text_column` and `label`) where given, else on `data`'s own labels: a pool or an
    unlabelled file has none."""
    path = Path(out)
    check_out_file(path, overwrite, ours=Path(transfer_labels_path(out)).exists())
    on = resolve_device(device)
    labels: list[int] = []  # a paper dataset's training labels: what the int8 check compares on
    if data in PAPER_DATASETS:
        split = load_paper_dataset(data, PAPER_DATASETS[data].train, data_dir)
        texts, labels = split.texts, split.labels or []
    else:
        texts = read_transfer(data, text_column)
    if not texts:
        raise TinyDistillError(f"{data}: no texts to label")
    teacher = Teacher.from_pretrained(teacher_dir).to(on)
    check_texts = texts
    if check is not None and precision != "int8":
        log.warning("--check-data %s is read only with --label-precision int8; labelling in %s without it", check,
                    precision)
    if check is not None and precision == "int8":  # only int8 is checked
        check_text, check_label = check_columns or (text_column, "label")
        split = load(check, PAPER_DATASETS[check].train if check in PAPER_DATASETS else None, data_dir, check_text,
                     check_label)
        if split.labels is None:
            raise TinyDistillError(f"--check-data {check}: no labels to check the int8 teacher on")
        split = align_labels(split, teacher.classes_.astype(str).tolist())
        check_texts, labels = split.texts, list(split.labels or [])
    cache = LogitCache(logit_cache_path())
    teacher, labelling = label_precision(teacher, precision, check_texts, labels, cache,
                                         "training labels" if check is None else f"labels of {check}")
    logits = teacher.logits(texts, cache=cache, progress=progress)
    names = teacher.classes_.astype(str).tolist()
    write_transfer_file(path, texts, logits, names)
    return {"texts": len(texts), "out": str(path), "labels": names, "labelling": labelling}


def label_folder(teacher_dir: str, data: str, out: str, *, data_dir: str | None = None, text_column: str = "text",
                 overwrite: bool = False, engine: str = "local", address: str | None = None, workers: int = 1,
                 threads_per_worker: int = 1, gpus_per_worker: float = 0.0, rows_per_shard: int = 10_000,
                 batch_size: int = 64, progress: bool = True) -> dict:
    """Label `data` into a folder (local or a pyarrow URI) of Parquet logit shards, in this process or on Ray
    (`engine="ray"`), resumable shard by shard; returns a summary."""
    if out.endswith(".jsonl"):
        raise TinyDistillError(f"--out {out}: --engine ray writes a folder of Parquet shards; give a folder")
    folder = Path(out)
    if "://" not in out and folder.is_dir() and not overwrite:  # never mix shards into a folder of the user's
        foreign = sorted(p.name for p in folder.iterdir()
                         if p.name != "manifest.json" and not p.name.startswith(("part-", ".")))
        if foreign:
            raise TinyDistillError(f"{folder}: is a folder with files label did not write ({foreign[0]}); give a "
                                   "new folder, or --overwrite to add the shards beside them")
    runner = None
    if engine == "ray":
        from tinydistill.scale import ray_engine  # the scale extra: the core never imports it

        runner = ray_engine(address, workers, threads_per_worker, gpus_per_worker)
    texts = load_paper_dataset(data, PAPER_DATASETS[data].train, data_dir).texts if data in PAPER_DATASETS else data
    manifest = label_to_shards(teacher_dir, texts, out, text_column=text_column, rows_per_shard=rows_per_shard,
                               batch_size=batch_size, engine=runner, progress=progress)
    return {"texts": manifest["rows"], "out": out, "labels": manifest["labels"], "shards": len(manifest["shards"]),
            "labelled": manifest["labelled"]}
