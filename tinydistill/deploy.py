"""The deployment commands: `export`, `predict` and `serve`, each parsing its options and calling one function.

    tinydistill export runs/sst2-200-s0 --format int8            # every student of a run
    tinydistill predict runs/sst2-200-s0/students/cbow reviews.csv -o labels.jsonl
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

INPUT_FORMATS = ("auto", "lines", "csv", "tsv", "jsonl")
OUTPUT_FORMATS = ("jsonl", "csv")


def register_cli(sub) -> None:
    """Add `export`, `predict` and `serve` to the CLI's sub-parsers."""
    p = sub.add_parser("export", help="write a self-contained student folder: numpy, int8 or onnx",
                       description="Export a student folder, or every student of a run folder, into a folder "
                       "that the torch-free runtime (numpy, int8) or an ONNX runtime (onnx) can run.")
    p.add_argument("source", metavar="RUN_OR_MODEL", help="a student folder or a run folder (with students/)")
    p.add_argument("--format", default="numpy", choices=["numpy", "int8", "onnx"])
    p.add_argument("--out", help="output folder (default: MODEL-FORMAT, or RUN/export-FORMAT/<student>)")
    p.add_argument("--student", help="with a run folder: export only this student")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="label texts from a file or standard input (JSON Lines or CSV out)",
                       description="Read texts (one a line, CSV/TSV with a text column, or JSON Lines with a "
                       "text field or a JSON string a line) and write one label and its probabilities per text, "
                       "in order, as they are computed.")
    p.add_argument("model", help="a student folder (saved or exported)")
    p.add_argument("input", nargs="?", default="-", help="input file (default: standard input)")
    p.add_argument("-o", "--output", default="-", help="output file (default: standard output)")
    p.add_argument("--input-format", default="auto", choices=INPUT_FORMATS,
                   help="auto: by file extension (.csv, .tsv, .jsonl/.ndjson); standard input: JSON Lines if the "
                   "first line starts with '{', else plain lines")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, help="default: csv for a .csv output, else jsonl")
    p.add_argument("--text-column", default="text", help="CSV column or JSON field with the text")
    p.add_argument("--batch-size", type=int, default=1000)
    add_abstain_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="serve a student over HTTP (POST /predict, GET /health, /metadata)",
                       description="Serve a student with uvicorn. Texts over --max-chars are cut to that many "
                       "characters (a student reads at most its max_length tokens anyway); bigger bodies or "
                       "batches get a 413. OpenAPI at /openapi.json, docs at /docs.")
    p.add_argument("model", help="a student folder (saved or exported)")
    p.add_argument("--host", default="127.0.0.1", help="default: loopback only; 0.0.0.0 for every interface")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-texts", type=int, default=1000, help="texts per request (default: %(default)s)")
    p.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024, help="request body (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=100_000, help="characters kept per text (default: %(default)s)")
    add_abstain_options(p)
    p.set_defaults(func=cmd_serve)


def add_abstain_options(p) -> None:
    """`--min-confidence` and `--max-unknown`, shared by `predict` and `serve`."""
    p.add_argument("--min-confidence", type=float, metavar="P",
                   help="abstain (label null, with a reason) when the top probability is under P")
    p.add_argument("--max-unknown", type=float, metavar="R", help="abstain when more than a share R (0-1) of a "
                   "text's words are not in the model's vocabulary")


# ---------------------------------------------------------------------------------------------- commands


def cmd_export(a: argparse.Namespace) -> None:
    from tinydistill.export import export

    source = Path(a.source)
    is_run = (source / "students").is_dir() and not (source / "config.json").exists()
    default = source / f"export-{a.format}" if is_run else source.with_name(f"{source.name}-{a.format}")
    written = export(source, a.out or default, a.format, a.student)
    print(json.dumps({"format": a.format, "exported": [str(p) for p in written]}))


def cmd_predict(a: argparse.Namespace) -> None:
    count = predict_file(a.model, a.input, a.output, a.input_format, a.output_format, a.text_column, a.batch_size,
                         progress=not a.quiet, min_confidence=a.min_confidence, max_unknown=a.max_unknown)
    if a.output != "-":
        print(json.dumps({"texts": count, "output": a.output}))


def cmd_serve(a: argparse.Namespace) -> None:
    from tinydistill.serve import Limits, serve

    serve(a.model, a.host, a.port, Limits(a.max_texts, a.max_bytes, a.max_chars),
          log_level="warning" if a.quiet else "info", min_confidence=a.min_confidence, max_unknown=a.max_unknown)


# ----------------------------------------------------------------------------------------------- predict


def load_model(folder: str | os.PathLike) -> runtime.Model:
    """`runtime.load`, with a hint when given a run folder instead of one of its students."""
    folder = Path(folder)
    if (folder / "students").is_dir() and not (folder / "config.json").exists():
        names = sorted(p.name for p in (folder / "students").iterdir() if p.is_dir())
        raise TinyDistillError(f"{folder}: a run folder; pick a student: {', '.join(f'students/{n}' for n in names)}")
    return runtime.load(folder)


def read_texts(handle: Iterable[str], fmt: str, text_column: str = "text", source: str = "<stdin>") -> Iterator[str]:
    """Texts from an open file, one per record; errors name the source and line."""
    if fmt == "lines":
        for line in handle:
            yield line.rstrip("\r\n")
    elif fmt in ("csv", "tsv"):
        reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
        if reader.fieldnames is None:
            return
        if text_column not in reader.fieldnames:
            raise TinyDistillError(f"{source}:1: no column {text_column!r} (columns: {reader.fieldnames}); "
                                   "use --text-column")
        for row in reader:
            yield row[text_column] or ""
    elif fmt == "jsonl":
        for number, record in iter_json_lines(handle, source):
            text = record.get(text_column) if isinstance(record, dict) else record
            if not isinstance(text, str):
                raise TinyDistillError(f"{source}:{number}: expected a JSON string or an object with a "
                                       f"{text_column!r} string")
            yield text
    else:
        raise TinyDistillError(f"unknown input format {fmt!r}; expected one of {list(INPUT_FORMATS[1:])}")


def guess_format(path: str, first_line: str | None = None) -> str:
    """The input format from the file extension, or for standard input from its first line."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if path == "-" and first_line is not None and first_line.lstrip().startswith("{"):
        return "jsonl"
    return "lines"


def write_predictions(out: TextIO, labels: list[str], rows: list[dict], fmt: str, header: bool) -> None:
    """One row per text (`runtime.Model.predictions`): JSON Lines {"label", "probabilities", "unknown_rate",
    "reason"}, or CSV label,prob_<label>,...,unknown_rate,reason; an abstention has label null (CSV: empty)."""
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps({"label": r["label"], "probabilities": {
                name: round(p, 6) for name, p in r["probabilities"].items()},
                "unknown_rate": round(r["unknown_rate"], 4), "reason": r["reason"]}) + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(["label"] + [f"prob_{name}" for name in labels] + ["unknown_rate", "reason"])
    for r in rows:
        writer.writerow([r["label"] or ""] + [f"{p:.6f}" for p in r["probabilities"].values()]
                        + [f"{r['unknown_rate']:.4f}", r["reason"] or ""])


def predict_stream(model: runtime.Model, texts: Iterator[str], out: TextIO, fmt: str = "jsonl",
                   batch_size: int = 1000, on_batch=None, min_confidence: float | None = None,
                   max_unknown: float | None = None) -> int:
    """Predict `texts` batch by batch and write each batch as soon as it is done; returns the count.

    `min_confidence` / `max_unknown`: abstain on a text whose top probability is under, or whose unknown-word
    rate is over, the threshold (see `runtime.Model.predictions`)."""
    if fmt not in OUTPUT_FORMATS:
        raise TinyDistillError(f"unknown output format {fmt!r}; expected one of {list(OUTPUT_FORMATS)}")
    if batch_size < 1:
        raise TinyDistillError(f"--batch-size must be at least 1 (got {batch_size})")
    count = 0
    while batch := list(islice(texts, batch_size)):
        write_predictions(out, model.labels, model.predictions(batch, min_confidence, max_unknown), fmt,
                          header=count == 0)
        out.flush()
        count += len(batch)
        if on_batch is not None:
            on_batch()
    if count == 0 and fmt == "csv":
        write_predictions(out, model.labels, [], fmt, header=True)
    return count


def predict_file(model_dir: str | os.PathLike, input: str = "-", output: str = "-", input_format: str = "auto",
                 output_format: str | None = None, text_column: str = "text", batch_size: int = 1000,
                 progress: bool = True, min_confidence: float | None = None, max_unknown: float | None = None) -> int:
    """Label every text of `input` ("-": standard input) into `output` ("-": standard output); returns the count.

    A file shows a progress bar (by bytes read) on standard error; an output file is written under a
    temporary name and renamed when complete.
    """
    runtime.check_abstain(min_confidence, max_unknown)
    model = load_model(model_dir)
    fmt_out = output_format or ("csv" if output.lower().endswith(".csv") else "jsonl")
    source = "<stdin>" if input == "-" else input
    if input == "-":
        handle = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    elif not Path(input).is_file():
        raise TinyDistillError(f"{input}: input file not found")
    else:
        handle = Path(input).open(encoding="utf-8", newline="")  # closed in the finally below
    target = None if output == "-" else Path(output)
    tmp = None if target is None else target.with_name(target.name + ".tmp")
    bar = _progress_bar(None if input == "-" else os.path.getsize(input), progress)
    out = sys.stdout if tmp is None else tmp.open("w", encoding="utf-8", newline="")
    lines: Iterable[str]
    try:
        fmt_in, lines = input_format, handle
        if fmt_in == "auto":
            first = handle.readline()
            fmt_in = guess_format(input, first)
            lines = chain([first], handle)
        texts = read_texts(lines, fmt_in, text_column, source)
        update = None if bar is None else (lambda: bar.update(handle.buffer.tell() - bar.n))
        count = predict_stream(model, texts, out, fmt_out, batch_size, on_batch=update,
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
        if input != "-":
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
