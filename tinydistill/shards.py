"""Transfer sets of any size on disk: the labelled logit shards, written, checked, and read in row ranges.

A labelling run splits its input into shards of fixed row ranges (``sources.plan_shards``), decided from the input
alone, so a rerun finds the same shards and labels only those missing or broken. Each shard is labelled by
``Teacher.logits`` on that shard's texts (the teacher pads per batch, so the batch composition, and with it the
last bits of the logits, depends only on the shard) and written atomically as a Parquet file of ``text`` and
``logits`` (a fixed-size list of float32); ``manifest.json`` (label names, teacher fingerprint, shards with
row counts and sha256) is written last. Both engines, the local loop here and Ray (``tinydistill.scale``),
write this format, and ``LogitShards`` reads it in row ranges so that ``distil`` streams it.

Inputs and outputs are local paths or any URI ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``hdfs://``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from tinydistill.errors import TinyDistillError
from tinydistill.folders import read_transfer_labels, read_transfer_lines, transfer_labels_path
from tinydistill.sources import filesystem, join, plan_shards, read_texts

log = logging.getLogger(__name__)

FORMAT = "tinydistill-logits"


def plan_digest(specs: Sequence[dict], fingerprint: str) -> str:
    """What makes two runs the same labelling: the shards' inputs and the teacher."""
    digest = hashlib.sha256(fingerprint.encode())
    for spec in specs:
        digest.update(json.dumps(spec, sort_keys=True).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- writing


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_shard(out: str, index: int, texts: Sequence[str], logits: np.ndarray, plan: str) -> dict:
    """Write shard ``index`` atomically (a temporary name, then a rename); its manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    logits = np.ascontiguousarray(logits, dtype=np.float32)
    values = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1), pa.float32()), logits.shape[1])
    table = pa.table({"text": pa.array(list(texts), pa.string()), "logits": values})
    table = table.replace_schema_metadata({"tinydistill": json.dumps({"plan": plan, "shard": index})})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=4096)
    data = sink.getvalue().to_pybytes()
    fs, folder = filesystem(out)
    fs.create_dir(folder, recursive=True)
    final, tmp = join(folder, shard_name(index)), join(folder, f".{shard_name(index)}.tmp")
    with fs.open_output_stream(tmp) as handle:
        handle.write(data)
    fs.move(tmp, final)  # a kill leaves no file or the whole file under the final name
    return {"file": shard_name(index), "rows": len(texts), "sha256": hashlib.sha256(data).hexdigest()}


def check_shard(out: str, index: int, rows: int, plan: str, sha256: str | None = None) -> dict | None:
    """The manifest entry of an existing shard if it is whole and belongs to ``plan``, else None."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, folder = filesystem(out)
    path = join(folder, shard_name(index))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        return None
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = json.loads((parquet.schema_arrow.metadata or {}).get(b"tinydistill", b"{}"))
    except Exception:  # a truncated or foreign file: label it again
        return None
    if meta != {"plan": plan, "shard": index} or parquet.metadata.num_rows != rows:
        return None
    return {"file": shard_name(index), "rows": rows, "sha256": digest}


def label_to_shards(teacher_dir: str, data: str | Sequence[str], out: str, *, text_column: str = "text",
                    rows_per_shard: int = 10_000, batch_size: int = 64, engine: Callable | None = None,
                    progress: bool = True) -> dict:
    """Label ``data`` with the teacher in ``teacher_dir`` into the shard folder ``out``; return the manifest.

    Shards already in ``out`` from the same input and teacher (same plan) are checked (row count, and the
    sha256 a previous manifest recorded) and kept; the rest are labelled by ``engine(todo, teacher_dir,
    out, batch_size)``, an iterator of ``(index, entry)`` (default: this process, one shard after another).
    """
    from tinydistill.teacher import Teacher

    # absolute: a Ray worker's current folder is not the driver's
    out = out if "://" in out else os.path.abspath(out)
    teacher_dir = os.path.abspath(teacher_dir)
    specs = plan_shards(data, rows_per_shard, text_column)  # first: bad input fails before any weights load
    teacher = Teacher.from_pretrained(teacher_dir)  # the driver needs only the fingerprint and the label names
    plan = plan_digest(specs, teacher.fingerprint)
    previous = read_manifest(out, missing_ok=True)
    if previous and previous.get("plan") != plan:
        raise TinyDistillError(f"{out} holds logits of another input or teacher; use a new output folder")
    recorded = {int(s["file"][5:10]): s["sha256"] for s in (previous or {}).get("shards", [])}
    entries: dict[int, dict] = {}
    for index, spec in enumerate(specs):
        rows = len(spec["texts"]) if spec["kind"] == "texts" else spec["stop"] - spec["start"]
        entry = check_shard(out, index, rows, plan, recorded.get(index))
        if entry is not None:
            entries[index] = entry
    todo = [(index, spec) for index, spec in enumerate(specs) if index not in entries]
    log.info("labelling %d of %d shards (%d already done) into %s", len(todo), len(specs), len(entries), out)
    from tqdm.auto import tqdm

    run = engine or _local_engine
    with tqdm(total=len(todo), desc="shards", unit="shard", disable=not progress or not todo) as bar:
        for index, entry in run(todo, teacher_dir, out, plan, batch_size):
            entries[index] = entry
            bar.update()
    manifest = {"format": FORMAT, "version": 1, "labels": teacher.classes_.tolist(),
                "teacher": {"path": str(teacher_dir), "fingerprint": teacher.fingerprint,
                            "max_length": teacher.max_length}, "plan": plan, "rows_per_shard": rows_per_shard,
                "rows": sum(e["rows"] for e in entries.values()), "labelled": len(todo),
                "shards": [entries[i] for i in range(len(specs))]}
    fs, folder = filesystem(out)
    with fs.open_output_stream(join(folder, ".manifest.json.tmp")) as handle:
        handle.write(json.dumps(manifest, indent=1).encode())
    fs.move(join(folder, ".manifest.json.tmp"), join(folder, "manifest.json"))  # last: the folder is complete
    return manifest


def label_shard(teacher: Any, spec: dict, out: str, index: int, plan: str, batch_size: int) -> dict:
    """Read, label and write one shard: what every engine's worker runs."""
    texts = read_texts(spec)
    return write_shard(out, index, texts, teacher.logits(texts, batch_size=batch_size, progress=False), plan)


def _local_engine(todo: Sequence[tuple[int, dict]], teacher_dir: str, out: str, plan: str,
                  batch_size: int) -> Iterator[tuple[int, dict]]:
    from tinydistill.teacher import Teacher

    teacher = Teacher.from_pretrained(teacher_dir)
    for index, spec in todo:
        yield index, label_shard(teacher, spec, out, index, plan, batch_size)


# ---------------------------------------------------------------------------------------------- reading logits


def read_manifest(folder: str, missing_ok: bool = False) -> dict | None:
    import pyarrow.fs as pafs

    fs, path = filesystem(folder)
    place = join(path, "manifest.json")
    if fs.get_file_info(place).type != pafs.FileType.File:
        if missing_ok:
            return None
        raise TinyDistillError(f"{folder}: no manifest.json; not a finished logit shard folder (rerun `label`)")
    with fs.open_input_stream(place) as handle:
        manifest = json.loads(handle.read())
    if manifest.get("format") != FORMAT:
        if missing_ok:
            return None
        raise TinyDistillError(f"{folder}/manifest.json: not a {FORMAT} manifest")
    return manifest


def is_logit_folder(source: str) -> bool:
    """Whether ``source`` is a folder written by ``label_to_shards``."""
    try:
        return read_manifest(source, missing_ok=True) is not None
    except Exception:  # not a folder, not readable: not ours
        return False


class InMemoryLogits:
    """Texts and their logits in memory, read like ``LogitShards`` (the streaming trainer takes either)."""

    def __init__(self, texts: Sequence[str], logits: np.ndarray, labels: Sequence[str] | None = None):
        self.texts, self.logits = list(texts), np.asarray(logits, dtype=np.float32)
        self.labels = list(labels) if labels else None

    def __len__(self) -> int:
        return len(self.texts)

    def read(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        return self.texts[start:stop], self.logits[start:stop]


class LogitShards:
    """A shard folder read in row ranges: memory holds the row groups a range touches, never the whole set."""

    def __init__(self, folder: str):
        manifest = read_manifest(folder)
        assert manifest is not None
        self.folder, self.manifest, self.labels = folder, manifest, list(manifest["labels"])
        self.fs, self.path = filesystem(folder)
        self.bounds = np.cumsum([0] + [s["rows"] for s in manifest["shards"]])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def read(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        """Rows ``start:stop`` across shards: texts and (rows, classes) float32 logits."""
        import pyarrow.parquet as pq

        texts: list[str] = []
        parts: list[np.ndarray] = []
        first = int(np.searchsorted(self.bounds, start, side="right")) - 1
        for k in range(max(first, 0), len(self.manifest["shards"])):
            lo = int(self.bounds[k])
            if lo >= stop:
                break
            with self.fs.open_input_file(join(self.path, self.manifest["shards"][k]["file"])) as handle:
                parquet = pq.ParquetFile(handle)
                row = lo
                for group in range(parquet.num_row_groups):
                    size = parquet.metadata.row_group(group).num_rows
                    if row + size > start and row < stop:
                        table = parquet.read_row_group(group)
                        a, b = max(start - row, 0), min(stop - row, size)
                        texts += table.column("text").to_pylist()[a:b]
                        flat = table.column("logits").combine_chunks()
                        parts.append(flat.flatten().to_numpy().reshape(size, -1)[a:b])
                    row += size
        width = len(self.labels)
        return texts, (np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, width), np.float32))

    def iter_texts(self, block_rows: int = 65_536) -> Iterable[str]:
        for start in range(0, len(self), block_rows):
            yield from self.read(start, min(start + block_rows, len(self)))[0]


class ConcatLogits:
    """Sources read one after another as one (``run``: the in-memory transfer set, then shard folders)."""

    def __init__(self, parts: Sequence[InMemoryLogits | LogitShards]):
        self.parts = [p for p in parts if len(p)]
        self.labels = next((p.labels for p in self.parts if p.labels), None)
        self.bounds = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def read(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        texts: list[str] = []
        parts = []
        for k, part in enumerate(self.parts):
            lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
            if hi > start and lo < stop:
                t, v = part.read(max(start - lo, 0), min(stop, hi) - lo)
                texts += t
                parts.append(v)
        return texts, np.concatenate(parts)


def read_logits(source: str) -> InMemoryLogits | LogitShards:
    """A transfer set with logits: a shard folder (streamed), or a JSON Lines file from ``label`` (in memory)."""
    if is_logit_folder(source):
        return LogitShards(source)
    fs, path = filesystem(source)
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        raise TinyDistillError(f"{source}: file not found (expected a JSON Lines file or a logit shard folder)")
    try:
        with fs.open_input_stream(path, compression="gzip" if path.endswith(".gz") else None) as raw:
            texts, logits = read_transfer_lines(io.TextIOWrapper(raw, encoding="utf-8-sig"), source)
    except UnicodeDecodeError as exc:
        raise TinyDistillError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    labels_path = transfer_labels_path(path)  # written beside it by `label`
    labels = None
    if fs.get_file_info(labels_path).type == pafs.FileType.File:
        with fs.open_input_stream(labels_path) as handle:
            labels = read_transfer_labels(handle.read(), labels_path, logits.shape[1])
    return InMemoryLogits(texts, logits, labels)

