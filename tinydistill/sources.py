"""The input of a labelling run: files and folders of texts, local or any URI ``pyarrow.fs`` opens (``s3://``,
``gs://``, ``hdfs://``), planned into shards of fixed row ranges.

``plan_shards`` cuts the input (a text/CSV/TSV/JSONL/Parquet file, optionally gzip except Parquet; a folder of
them; an augment pool) into shards decided from the input alone, so a rerun finds the same shards; ``read_texts``
reads one planned shard back. ``tinydistill.shards`` labels and writes them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from tinydistill.errors import TinyDistillError

LINE_KINDS = {".txt": "lines", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
              ".tsv": "tsv", ".parquet": "parquet"}


# ---------------------------------------------------------------------------------------------- paths


def filesystem(uri: str) -> tuple[Any, str]:
    """A ``pyarrow.fs`` filesystem and the path in it, for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises several types for an unknown scheme or a bad URI
        raise TinyDistillError(f"{uri}: cannot open ({exc})") from None


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _kind(path: str) -> tuple[str, bool]:
    name = path.lower()
    packed = name.endswith(".gz")
    stem = name[:-3] if packed else name
    ext = os.path.splitext(stem)[1]
    if ext not in LINE_KINDS:
        raise TinyDistillError(f"{path}: unknown file type {ext or '(none)'}; expected .txt, .csv, .tsv, .jsonl "
                               "or .parquet (optionally .gz, except Parquet)")
    return LINE_KINDS[ext], packed


def input_files(source: str) -> list[str]:
    """The files of ``source``: the file itself, or a folder's data files in name order (an augment pool's
    shards in its manifest's order)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(source)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise TinyDistillError(f"{source}: file or folder not found")
    if info.type == pafs.FileType.File:
        return [path]
    manifest = join(path, "manifest.json")
    if fs.get_file_info(manifest).type == pafs.FileType.File:
        with fs.open_input_stream(manifest) as handle:
            meta = json.loads(handle.read())
        if meta.get("format") == "tinydistill-pool":
            return [join(path, shard["file"]) for shard in meta["shards"]]
    found = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(path)) if f.type == pafs.FileType.File
                   and not os.path.basename(f.path).startswith((".", "_")) and f.path.lower().endswith(
                       tuple(e + s for e in LINE_KINDS if e != ".json" for s in ("", ".gz"))))
    if not found:
        raise TinyDistillError(f"{source}: no .txt/.csv/.tsv/.jsonl/.parquet files in the folder")
    return found


# ---------------------------------------------------------------------------------------------- reading


def _rows(fs: Any, path: str, text_column: str, offset: int = 0) -> Iterator[tuple[int, str]]:
    """``(byte_offset, text)`` of each row of a line-based file from ``offset`` (offsets only for plain files)."""
    kind, packed = _kind(path)
    if kind in ("csv", "tsv"):
        with fs.open_input_stream(path, compression="gzip" if packed else None) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.DictReader(handle, delimiter="\t" if kind == "tsv" else ",",
                                    quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL)
            if text_column not in (reader.fieldnames or []):
                raise TinyDistillError(f"{path}: no column {text_column!r}; columns are {reader.fieldnames}")
            for number, row in enumerate(reader, 2):
                yield -1, _text(row.get(text_column), path, number, text_column)
        return
    opened = fs.open_input_stream(path, compression="gzip") if packed else fs.open_input_file(path)
    with opened as raw:
        if offset:
            raw.seek(offset)
        position = offset
        for number, line in enumerate(io.BufferedReader(raw, 1 << 20), 1):
            start, position = position, position + len(line)
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError:
                raise TinyDistillError(f"{path}: byte {start} is not valid UTF-8; re-save it as UTF-8") from None
            if not decoded.strip():
                continue  # blank lines are not texts (as `read_transfer` reads them)
            if kind == "lines":
                yield (-1 if packed else start), decoded.rstrip("\n")
                continue
            try:
                row = json.loads(decoded)
            except json.JSONDecodeError:
                raise TinyDistillError(f"{path}: line {number if not offset else 'at byte ' + str(start)}: "
                                       "not valid JSON") from None
            if not isinstance(row, dict):
                raise TinyDistillError(f"{path}:{number}: expected a JSON object per line")
            yield (-1 if packed else start), _text(row.get(text_column), path, number, text_column)


def _text(value: Any, path: str, number: int, column: str) -> str:
    if value is None or not str(value).strip():
        raise TinyDistillError(f"{path}:{number}: empty or missing text in column {column!r}")
    return str(value)


def plan_shards(source: str | Sequence[str], rows_per_shard: int, text_column: str = "text") -> list[dict]:
    """Cut the input into shards of ``rows_per_shard`` rows (each file's last one shorter); JSON-able specs.

    ``source``: a file, a folder of files, an augment pool folder (local or URI), or a list of texts (held in
    the specs). A Parquet file is planned from its footer; other files by one streaming pass that notes the
    byte offset of each shard's first row (not for gzip), so a worker seeks there instead of reading from the top.
    """
    if rows_per_shard <= 0:
        raise TinyDistillError(f"--shard-rows must be positive, got {rows_per_shard}")
    if not isinstance(source, str):
        texts = list(source)
        return [{"kind": "texts", "texts": texts[s: s + rows_per_shard]} for s in range(0, len(texts), rows_per_shard)]
    import pyarrow.parquet as pq

    specs: list[dict] = []
    fs, _ = filesystem(source)
    for path in input_files(source):
        kind, _packed = _kind(path)
        uri = path if "://" not in source else source.split("://")[0] + "://" + path
        base = {"kind": kind, "file": uri, "column": text_column}
        if kind == "parquet":
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
                n = meta.num_rows
            offsets = [-1] * len(range(0, n, rows_per_shard))
        else:
            offsets, n = [], 0
            for offset, _ in _rows(fs, path, text_column):
                if n % rows_per_shard == 0:
                    offsets.append(offset)
                n += 1
        for k, start in enumerate(range(0, n, rows_per_shard)):
            specs.append({**base, "start": start, "stop": min(start + rows_per_shard, n), "offset": offsets[k]})
    if not specs:
        raise TinyDistillError(f"{source}: no texts")
    return specs


def read_texts(spec: dict) -> list[str]:
    """The texts of one planned shard."""
    if spec["kind"] == "texts":
        return list(spec["texts"])
    fs, path = filesystem(spec["file"])
    start, stop = spec["start"], spec["stop"]
    if spec["kind"] == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            if spec["column"] not in parquet.schema_arrow.names:
                raise TinyDistillError(f"{spec['file']}: no column {spec['column']!r}; columns are "
                                       f"{parquet.schema_arrow.names}")
            texts, first = [], 0
            for group in range(parquet.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                if first + size > start and first < stop:
                    column = parquet.read_row_group(group, columns=[spec["column"]]).column(0).to_pylist()
                    texts += column[max(start - first, 0): stop - first]
                first += size
        for number, text in enumerate(texts, start + 1):
            _text(text, spec["file"], number, spec["column"])
        return [str(t) for t in texts]
    offset = spec.get("offset", -1)
    skip = 0 if offset >= 0 else start  # with the byte offset known, the first row read is row `start`
    texts = []
    for k, (_, text) in enumerate(_rows(fs, path, spec["column"], max(offset, 0))):
        if k >= skip:
            texts.append(text)
            if len(texts) == stop - start:
                break
    return texts
