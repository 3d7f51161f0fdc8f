"""The deployment sub-commands: export, predict, serve, push.

`predict` and `serve` run on the numpy runtime (no torch); `export --format onnx` needs torch and onnx, `serve`
the serve extra, `push` huggingface_hub: each is imported by its command, so that --help lists them all.
"""

from __future__ import annotations

import argparse
import json

from tinydistill.cli.options import SIZE, abstain_options, extra, number
from tinydistill.deploy import INPUT_FORMATS, OUTPUT_FORMATS, predict_file
from tinydistill.export import FORMATS, default_out, export


def register(sub) -> None:
    """Add `export`, `predict`, `serve` and `push` to the CLI's sub-parsers."""
    p = sub.add_parser("export", help="write a self-contained student folder: numpy, int8 or onnx",
                       description="Export a student folder, or every student of a run folder, into a folder "
                       "that the torch-free runtime (numpy, int8) or an ONNX runtime (onnx) can run.")
    p.add_argument("source", metavar="RUN_OR_MODEL", help="a student folder or a run folder (with students/)")
    p.add_argument("--format", default="numpy", choices=FORMATS)
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
    abstain_options(p)
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
                   help="close a connection that sends nothing for this many seconds, or takes four times as long "
                   "to send one request (default: %(default)s)")
    abstain_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("push", help="upload a student folder and its model card to the Hugging Face Hub",
                       description="Create the Hub repo REPO_ID if needed and upload FOLDER (config.json, vocab.txt, "
                       "model.safetensors, README.md). The token: --token, else $HF_TOKEN or `hf auth login`'s.")
    p.add_argument("folder", help="a student folder (saved or exported)")
    p.add_argument("repo_id", help="org/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="a Hub token with write access (default: huggingface_hub's)")
    p.set_defaults(func=cmd_push)


def cmd_export(a: argparse.Namespace) -> None:
    written = export(a.source, a.out or default_out(a.source, a.format), a.format, a.student, overwrite=a.overwrite)
    print(json.dumps({"format": a.format, "exported": [str(p) for p in written]}))


def cmd_predict(a: argparse.Namespace) -> None:
    count = predict_file(a.model, a.input, a.output, a.input_format, a.output_format, a.text_column, a.batch_size,
                         progress=not a.quiet, max_chars=a.max_chars, min_confidence=a.min_confidence,
                         max_unknown=a.max_unknown)
    if a.output != "-":
        print(json.dumps({"texts": count, "output": a.output}))


def cmd_serve(a: argparse.Namespace) -> None:
    with extra("serve", "serve"):  # fastapi, uvicorn: the serve extra, imported by this command alone
        from tinydistill.serve import Limits, serve

    serve(a.model, a.host, a.port, Limits(a.max_texts, a.max_bytes, a.max_chars),
          log_level="warning" if a.quiet else "info", token=a.token, idle_timeout=a.idle_timeout,
          min_confidence=a.min_confidence, max_unknown=a.max_unknown)


def cmd_push(a: argparse.Namespace) -> None:
    from tinydistill.hub import push  # huggingface_hub is imported by hub.push itself, with its install hint

    print(json.dumps({"pushed": a.folder, "repo": push(a.folder, a.repo_id, token=a.token, private=a.private)}))
