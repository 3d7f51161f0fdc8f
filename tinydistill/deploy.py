"""The deployment commands: `export`, `predict` and `serve`, each parsing its options and calling one function.

    tinydistill export runs/sst2-200-s0 --format int8            # every student of a run
    tinydistill predict runs/sst2-200-s0/students/cbow reviews.parquet -o labelled.csv
    cat texts.txt | tinydistill predict cbow-int8/ --output-format csv
    tinydistill serve cbow-int8/ --port 8000

`predict` and `serve` run on the numpy runtime (no torch); only `export --format onnx` needs torch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import TextIO

from tinydistill import runtime
from tinydistill.data import iter_json_lines
from tinydistill.errors import TinyDistillError
from tinydistill.folders import check_out_file

INPUT_FORMATS = ("auto", "lines", "csv", "tsv", "jsonl", "parquet")
OUTPUT_FORMATS = ("jsonl", "csv", "tsv", "parquet")


def register_cli(sub) -> None:
    """Add `export`, `predict` and `serve` to the CLI's sub-parsers."""
    from tinydistill.cli import SIZE, number

    p = sub.add_parser("export", help="write a self-contained student folder: numpy, int8 or onnx",
                       description="Export a student folder, or every student of a run folder, into a folder "
                       "that the torch-free runtime (numpy, int8) or an ONNX runtime (onnx) can run.")
    p.add_argument("source", metavar="RUN_OR_MODEL", help="a student folder or a run folder (with students/)")
    p.add_argument("--format", default="numpy", choices=["numpy", "int8", "onnx"])
    p.add_argument("--out", help="output folder (default: MODEL-FORMAT, or RUN/export-FORMAT/<student>)")
    p.add_argument("--student", help="with a run folder: export only this student")
    p.add_argument("--overwrite", action="store_true", help="replace an --out that is not an export of the same "
                   "kind (default: refuse; an export is never written over or around its source)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="label texts from a file or standard input (JSON Lines, CSV, TSV or Parquet "
                       "out)", description="Read texts (CSV, TSV, JSON Lines or Parquet with a text column, by the "
                       "file's extension; any other file or standard input: one text a line, or JSON Lines if the "
                       "first line starts with '{') and write, in order, each text's label and probabilities "
                       "followed by the input's own columns (to join back on).")
    p.add_argument("model", help="a student folder (saved or exported) or a Hub repo id")
    p.add_argument("input", nargs="?", default="-", help="input file (default: standard input)")
    p.add_argument("-o", "--output", default="-", help="output file; its extension (.csv, .tsv, .jsonl, .parquet) "
                   "sets the format (default: JSON Lines on standard output)")
    p.add_argument("--input-format", default="auto", choices=INPUT_FORMATS,
                   help="auto: by file extension (.csv, .tsv, .jsonl/.ndjson, .parquet); standard input: JSON Lines "
                   "if the first line starts with '{', else plain lines")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, help="default: from the output's extension, else jsonl")
    p.add_argument("--text-column", default="text", help="the column (CSV, TSV, Parquet) or JSON field with the text")
    p.add_argument("--batch-size", type=SIZE, default=1000)
    p.add_argument("--max-chars", type=SIZE, default=100_000, help="characters kept per text before tokenising, "
                   "as serve does (default: %(default)s)")
    add_abstain_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="serve a student over HTTP (POST /predict, GET /health, /metadata)",
                       description="Serve a student with uvicorn. Texts over --max-chars are cut to that many "
                       "characters (a student reads at most its max_length tokens anyway); bigger bodies or "
                       "batches get a 413. OpenAPI at /openapi.json, docs at /docs.")
    p.add_argument("model", help="a student folder (saved or exported) or a Hub repo id")
    p.add_argument("--host", default="127.0.0.1", help="default: loopback only; 0.0.0.0 for every interface")
    p.add_argument("--port", type=number("int", minimum=0, maximum=65535), default=8000)
    p.add_argument("--max-texts", type=SIZE, default=1000, help="texts per request (default: %(default)s)")
    p.add_argument("--max-bytes", type=SIZE, default=2 * 1024 * 1024, help="request body (default: %(default)s)")
    p.add_argument("--max-chars", type=SIZE, default=100_000, help="characters kept per text (default: %(default)s)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every endpoint but /health (default: "
                   "$TINYDISTILL_TOKEN; set one when --host is not loopback)")
    p.add_argument("--idle-timeout", type=number(above=0), default=15.0,
                   help="close a connection that sends nothing for this many seconds (default: %(default)s)")
    add_abstain_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("push", help="upload a student folder and its model card to the Hugging Face Hub",
                       description="Create the Hub repo REPO_ID if needed and upload FOLDER (config.json, vocab.txt, "
                       "model.safetensors, README.md). The token: --token, else $HF_TOKEN or `hf auth login`'s.")
    p.add_argument("folder", help="a student folder (saved or exported)")
    p.add_argument("repo_id", help="org/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="a Hub token with write access (default: huggingface_hub's)")
    p.set_defaults(func=cmd_push)


def add_abstain_options(p) -> None:
    """`--min-confidence` and `--max-unknown`, shared by `predict` and `serve`."""
    from tinydistill.cli import number

    p.add_argument("--min-confidence", type=number(minimum=0, maximum=1), metavar="P",
                   help="abstain (label null, with a reason) when the top probability is under P")
    p.add_argument("--max-unknown", type=number(minimum=0, maximum=1), metavar="R",
                   help="abstain when more than a share R (0-1) of a text's words are not in the model's vocabulary")


# ---------------------------------------------------------------------------------------------- commands


def cmd_export(a: argparse.Namespace) -> None:
    from tinydistill.export import export

    source = Path(a.source)
    is_run = (source / "students").is_dir() and not (source / "config.json").exists()
    default = source / f"export-{a.format}" if is_run else source.with_name(f"{source.name}-{a.format}")
    written = export(source, a.out or default, a.format, a.student, overwrite=a.overwrite)
    print(json.dumps({"format": a.format, "exported": [str(p) for p in written]}))


def cmd_predict(a: argparse.Namespace) -> None:
    count = predict_file(a.model, a.input, a.output, a.input_format, a.output_format, a.text_column, a.batch_size,
                         progress=not a.quiet, max_chars=a.max_chars, min_confidence=a.min_confidence,
                         max_unknown=a.max_unknown)
    if a.output != "-":
        print(json.dumps({"texts": count, "output": a.output}))


def cmd_serve(a: argparse.Namespace) -> None:
    from tinydistill.serve import Limits, serve

    serve(a.model, a.host, a.port, Limits(a.max_texts, a.max_bytes, a.max_chars),
          log_level="warning" if a.quiet else "info", token=a.token, idle_timeout=a.idle_timeout,
          min_confidence=a.min_confidence, max_unknown=a.max_unknown)


def cmd_push(a: argparse.Namespace) -> None:
    from tinydistill.hub import push

    print(json.dumps({"pushed": a.folder, "repo": push(a.folder, a.repo_id, token=a.token, private=a.private)}))


# ----------------------------------------------------------------------------------------------- predict


def load_model(folder: str | os.PathLike) -> runtime.Model:
    """`runtime.load`, with a hint when given a run folder instead of one of its students."""
    folder = Path(folder)
    if (folder / "students").is_dir() and not (folder / "config.json").exists():
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
        import pyarrow.parquet as pq
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
            import pyarrow as pa
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
    handle: TextIO | None = None
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read as part of the first text
    if fmt_in != "parquet":  # text: closed in the finally below
        handle = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="") if input == "-" \
            else Path(input).open(encoding="utf-8-sig", newline="")
    elif input == "-":
        raise TinyDistillError("Parquet input needs a file, not standard input")
    tmp = None if target is None else target.with_name(f".{target.name}.{os.getpid()}.tmp")
    bar = _progress_bar(None if input == "-" or handle is None else os.path.getsize(input), progress)
    binary = fmt_out == "parquet"
    out = sys.stdout if tmp is None else tmp.open("wb") if binary else tmp.open("w", encoding="utf-8", newline="")
    try:
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
        count = predict_stream(model, records, writer, batch_size, on_batch=update, max_chars=max_chars,
                               min_confidence=min_confidence, max_unknown=max_unknown)
    except BaseException as exc:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
        if isinstance(exc, UnicodeDecodeError):
            raise TinyDistillError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        raise
    finally:
        if bar is not None:
            bar.close()
        if handle is not None and input != "-":
            handle.close()
    if tmp is not None and target is not None:
        out.close()
        tmp.replace(target)
    return count


def _progress_bar(total: int | None, enabled: bool):
    """A tqdm bar over the input's bytes, or None for standard input, when disabled, or without tqdm."""
    if total is None or not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc="predict", file=sys.stderr)
