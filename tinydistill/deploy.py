"""Batch prediction with a deployed student: texts from a file or standard input, labels and probabilities out.

    tinydistill predict runs/sst2-200-s0/students/cbow reviews.parquet -o labelled.csv
    cat texts.txt | tinydistill predict cbow-int8/ --output-format csv

`predict_file` (the `predict` sub-command) runs on the numpy runtime (no torch); its parts (`read_records`,
`PredictionWriter`, `predict_stream`) work on open files and iterators.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from itertools import chain, islice
from pathlib import Path
from typing import TextIO

from tinydistill import runtime
from tinydistill.data import iter_json_lines
from tinydistill.errors import TinyDistillError
from tinydistill.folders import atomic_output, check_out_file, is_run_folder

INPUT_FORMATS = ("auto", "lines", "csv", "tsv", "jsonl", "parquet")
OUTPUT_FORMATS = ("jsonl", "csv", "tsv", "parquet")


# ----------------------------------------------------------------------------------------------- predict


def load_model(folder: str | os.PathLike) -> runtime.Model:
    """`runtime.load`, with a hint when given a run folder instead of one of its students."""
    folder = Path(folder)
    if is_run_folder(folder):
        names = sorted(p.name for p in (folder / "students").iterdir() if p.is_dir())
        raise TinyDistillError(f"{folder}: a run folder; pick a student: {', '.join(f'students/{n}' for n in names)}")
    return runtime.load(folder)


def read_records(handle: Iterable[str], fmt: str, text_column: str = "text",
                 source: str = "<stdin>") -> Iterator[tuple[str, dict]]:
    """(text, the record's fields) per input record of an open text file; errors name the source and line.

    The fields (every column of a CSV/TSV row, every key of a JSON object, none for a plain line) are copied
    into the output, so that it can be joined back to the input.
    """
    if fmt == "lines":
        for line in handle:
            yield line.rstrip("\r\n"), {}
    elif fmt in ("csv", "tsv"):
        reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
        if reader.fieldnames is None:
            return
        if text_column not in reader.fieldnames:
            raise TinyDistillError(f"{source}:1: no column {text_column!r} (columns: {reader.fieldnames}); "
                                   "use --text-column")
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # a long text is cut later, not refused here
        try:
            for row in reader:
                yield row[text_column] or "", row
        except csv.Error as exc:
            raise TinyDistillError(f"{source}:{reader.line_num}: not valid CSV ({exc})") from None
    elif fmt == "jsonl":
        for number, record in iter_json_lines(handle, source):
            text = record.get(text_column) if isinstance(record, dict) else record
            if not isinstance(text, str):
                raise TinyDistillError(f"{source}:{number}: expected a JSON string or an object with a "
                                       f"{text_column!r} string")
            yield text, record if isinstance(record, dict) else {}
    else:
        raise TinyDistillError(f"unknown input format {fmt!r}; expected one of {list(INPUT_FORMATS[1:])}")


def read_parquet(path: str, text_column: str = "text", batch_size: int = 1000) -> Iterator[tuple[str, dict]]:
    """(text, row) per row of a Parquet file, read a batch of rows at a time."""
    try:
        import pyarrow.parquet as pq  # the train extra: predict needs it for Parquet files alone
    except ImportError:
        raise TinyDistillError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise TinyDistillError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if text_column not in table.schema_arrow.names:
        raise TinyDistillError(f"{path}: no column {text_column!r} (columns: {table.schema_arrow.names}); "
                               "use --text-column")
    for batch in table.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            text = row[text_column]
            yield ("" if text is None else str(text)), row


def guess_format(path: str, first_line: str | None = None) -> str:
    """The format from a file's extension (input or output), or for standard input from its first line."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if path == "-" and first_line is not None and first_line.lstrip().startswith("{"):
        return "jsonl"
    return "lines"


class PredictionWriter:
    """Writes one row per text: the label, the probabilities, the unknown-word rate and why it abstained (if it
    did: the label is then null), then the input record's fields.

    JSON Lines: {"label", "probabilities": {name: p}, "unknown_rate", "reason", ...fields}; CSV, TSV and Parquet:
    label, prob_<name>..., unknown_rate, reason, then the fields' columns. An input field whose name is taken by
    an output one is kept as `input_<name>`. Parquet is written once, at `close`; the others as each batch comes.
    """

    def __init__(self, out, fmt: str, labels: list[str]):
        if fmt not in OUTPUT_FORMATS:
            raise TinyDistillError(f"unknown output format {fmt!r}; expected one of {list(OUTPUT_FORMATS)}")
        self.out, self.fmt, self.labels = out, fmt, labels
        self.columns: list[str] | None = None  # of the delimited formats, fixed by the first batch
        self.rows: list[dict] = []  # Parquet's, until close

    def records(self, predictions: list[dict], fields: Iterable[dict]) -> list[dict]:
        """Output rows from `runtime.Model.predictions` and the input records' fields."""
        out = []
        for found, extra in zip(predictions, fields):
            record: dict = {"label": found["label"]}
            probs = {name: round(p, 6) for name, p in found["probabilities"].items()}
            if self.fmt == "jsonl":
                record["probabilities"] = probs
            else:
                record.update({f"prob_{name}": p for name, p in probs.items()})
            record.update(unknown_rate=round(found["unknown_rate"], 4), reason=found["reason"])
            for key, value in extra.items():
                record[f"input_{key}" if key in record else key] = value
            out.append(record)
        return out

    def write(self, predictions: list[dict], fields: Iterable[dict]) -> None:
        records = self.records(predictions, fields)
        if self.fmt == "jsonl":
            self.out.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        elif self.fmt == "parquet":
            self.rows += records
        else:
            if self.columns is None:
                self.columns = list(records[0])
                self._writer().writeheader()
            self._writer().writerows(records)

    def _writer(self) -> csv.DictWriter:
        return csv.DictWriter(self.out, self.columns or [], delimiter="\t" if self.fmt == "tsv" else ",",
                              lineterminator="\n", extrasaction="ignore", restval="")

    def close(self) -> None:
        """Write what is held back: Parquet's rows (no texts: empty CSV/TSV/JSON Lines, a Parquet of no rows)."""
        if self.fmt == "parquet":
            import pyarrow as pa  # the train extra: only Parquet output needs it
            import pyarrow.parquet as pq

            columns = ["label"] + [f"prob_{name}" for name in self.labels] + ["unknown_rate", "reason"]
            table = pa.Table.from_pylist(self.rows) if self.rows else pa.table({c: [] for c in columns})
            pq.write_table(table, self.out)


def predict_stream(model: runtime.Model, records: Iterator[tuple[str, dict]], writer: PredictionWriter,
                   batch_size: int = 1000, on_batch=None, max_chars: int = 100_000,
                   min_confidence: float | None = None, max_unknown: float | None = None) -> int:
    """Predict `records` ((text, fields) pairs) batch by batch, writing each batch when done; the count.

    Each text is cut to `max_chars` characters before tokenising (as `serve` does: a student reads at most its
    max_length tokens anyway, and a 100 MB line would otherwise be tokenised whole). No texts: nothing written.
    `min_confidence` / `max_unknown`: abstain on a text whose top probability is under, or whose unknown-word
    rate is over, the threshold (see `runtime.Model.predictions`).
    """
    if batch_size < 1:
        raise TinyDistillError(f"--batch-size must be at least 1 (got {batch_size})")
    if max_chars < 1:
        raise TinyDistillError(f"--max-chars must be at least 1 (got {max_chars})")
    count = 0
    while batch := list(islice(records, batch_size)):
        found = model.predictions([text[:max_chars] for text, _ in batch], min_confidence, max_unknown)
        writer.write(found, [fields for _, fields in batch])
        if writer.fmt != "parquet":
            writer.out.flush()
        count += len(batch)
        if on_batch is not None:
            on_batch()
    writer.close()
    return count


def predict_file(model_dir: str | os.PathLike, input: str = "-", output: str = "-", input_format: str = "auto",
                 output_format: str | None = None, text_column: str = "text", batch_size: int = 1000,
                 progress: bool = True, max_chars: int = 100_000, min_confidence: float | None = None,
                 max_unknown: float | None = None) -> int:
    """Label every text of `input` ("-": standard input) into `output` ("-": standard output); returns the count.

    Formats come from the file extensions (.csv, .tsv, .jsonl, .parquet; anything else in is one text a line,
    anything else out is JSON Lines) unless given. A file shows a progress bar (by bytes read) on standard
    error; an output file is written under a temporary name and renamed when complete; its folder must exist.
    """
    runtime.check_abstain(min_confidence, max_unknown)
    model = load_model(model_dir)
    fmt_out = output_format or (guess_format(output) if output != "-" else "jsonl")
    fmt_out = "jsonl" if fmt_out == "lines" else fmt_out
    if fmt_out == "parquet" and output == "-":
        raise TinyDistillError("Parquet output needs a file: -o FILE.parquet")
    source = "<stdin>" if input == "-" else input
    if input != "-" and Path(input).is_dir():
        raise TinyDistillError(f"{input}: a folder; expected an input file")
    if input != "-" and not Path(input).is_file():
        raise TinyDistillError(f"{input}: input file not found")
    target = None if output == "-" else check_out_file(output, overwrite=True, option="-o")
    fmt_in = input_format if input_format != "auto" else ("lines" if input == "-" else guess_format(input))
    handle = _open_input(input, fmt_in)
    bar = _progress_bar(None if input == "-" or handle is None else os.path.getsize(input), progress)
    sink = nullcontext(sys.stdout) if target is None else atomic_output(target, text=fmt_out != "parquet")
    try:
        with sink as out:
            if handle is None:
                records = read_parquet(input, text_column, batch_size)
            else:
                lines: Iterable[str] = handle
                if input_format == "auto" and input == "-":
                    first = handle.readline()
                    fmt_in = guess_format(input, first)
                    lines = chain([first] if first else [], handle)  # empty input: no texts, not one empty text
                records = read_records(lines, fmt_in, text_column, source)
            update = None if bar is None or handle is None else (lambda: bar.update(handle.buffer.tell() - bar.n))
            writer = PredictionWriter(out, fmt_out, model.classes_.astype(str).tolist())
            return predict_stream(model, records, writer, batch_size,
                                  on_batch=update, max_chars=max_chars,
                                  min_confidence=min_confidence, max_unknown=max_unknown)
    except UnicodeDecodeError as exc:
        raise TinyDistillError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    finally:
        if bar is not None:
            bar.close()
        if handle is not None and input != "-":
            handle.close()


def _open_input(input: str, fmt: str) -> TextIO | None:
    """The text input (closed by the caller unless standard input); None for Parquet, read by `read_parquet`."""
    if fmt == "parquet":
        if input == "-":
            raise TinyDistillError("Parquet input needs a file, not standard input")
        return None
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read as part of the first text
    if input == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    return Path(input).open(encoding="utf-8-sig", newline="")


def _progress_bar(total: int | None, enabled: bool):
    """A tqdm bar over the input's bytes, or None for standard input, when disabled, or without tqdm."""
    if total is None or not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # the train extra: without it, no bar
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc="predict", file=sys.stderr)
