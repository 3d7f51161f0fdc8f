"""Model cards and provenance: every saved student and teacher folder says where it came from.

A folder's provenance is one JSON object, kept in its config file (`config.json`'s `"provenance"` entry for a
student, `teacher.json`'s for a teacher; readers ignore keys they do not know) and rendered as `README.md`, a
model card in the Hugging Face Hub's format (YAML front matter, then prose and a table). Keys, all optional,
written as far as they are known:

    tinydistill, created          the version and UTC time that wrote it
    method                        "distilled", "labels only (NoDs)" or "fine-tuned teacher"
    teacher, recipe, teacher_params, teacher_scores
    data, test, text_column, label_column, language, dataset_id
    labeled, transfer, classes    labelled examples the teacher saw, transfer-set texts, label count
    variants                      augmentation variants of the transfer texts it also trained on (a small set grown)
    embedding                     where the word embedding started, when not from GloVe alone (`--teacher-vectors`)
    scores                        test scores: {"metric", "headline", "accuracy", "macro_f1", "f1", "mcc", "test"}
    agreement                     share of test texts where the student's label is the teacher's
    params, texts_per_s, latency_ms
    command                       a command line that makes the model again

Torch-free (the exporter and the runtime's users write cards too). Every file is written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tinydistill.folders import write_atomic

CARD = "README.md"
NAMES = {"cbow": "CBoW-FFN", "cbow-attn": "CBoW-attn", "bilstm": "BiLSTM", "cnn": "CNN"}
METRIC_NAMES = {"f1": "F1", "mcc": "MCC", "accuracy": "accuracy", "macro_f1": "macro-F1"}


def stamp() -> dict:
    """The version and time entries every provenance starts with."""
    from tinydistill import __version__

    return {"tinydistill": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def update_provenance(folder: str | Path, provenance: dict) -> dict:
    """Merge `provenance` into a student's config.json (or a teacher's teacher.json) and rewrite its card."""
    folder = Path(folder)
    teacher = not (folder / "config.json").exists() and (folder / "teacher.json").exists()
    path = folder / ("teacher.json" if teacher else "config.json")
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["provenance"] = {**meta.get("provenance", {}), **{k: v for k, v in provenance.items() if v is not None}}
    write_atomic(path, json.dumps(meta, indent=2, default=float))
    write_card(folder, meta, "teacher" if teacher else "student")
    return meta


def write_card(folder: str | Path, meta: dict, kind: str = "student") -> Path:
    """Write `folder/README.md` from the folder's config (`config.json` or `teacher.json` contents)."""
    path = Path(folder) / CARD
    write_atomic(path, model_card(meta, kind))
    return path


# ---------------------------------------------------------------------------------------------- the card


def _yaml(value, indent: int = 0) -> str:
    """A small YAML writer for the front matter: dicts, lists and JSON scalars (JSON strings are YAML)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return "\n".join(lines)
    lines = []
    for item in value:
        if isinstance(item, dict) and item:
            body = _yaml(item, indent + 2)
            lines.append(f"{pad}- {body[indent + 2:]}")
        else:
            lines.append(f"{pad}- {json.dumps(item)}")
    return "\n".join(lines)


def _pct(x) -> str:
    return f"{100 * x:.1f}"


def _score_line(scores: dict) -> str:
    metric = scores.get("metric", "f1")
    parts = [f"{METRIC_NAMES.get(metric, metric)} {_pct(scores['headline'])}"] if "headline" in scores else []
    parts += [f"{METRIC_NAMES[k]} {_pct(scores[k])}" for k in ("accuracy", "macro_f1") if k in scores]
    where = f" on {scores['test']}" if scores.get("test") else ""
    return ", ".join(parts) + where


def front_matter(meta: dict, kind: str) -> dict:
    """The card's YAML header: library, pipeline tag, language, tags, datasets, metrics and a model-index."""
    p = meta.get("provenance", {})
    model_type = meta.get("model_type", "teacher")
    head: dict = {"library_name": "tinydistill", "pipeline_tag": "text-classification"}
    if p.get("language"):
        head["language"] = [p["language"]]
    head["tags"] = ["tinydistill", "text-classification"] + (
        ["knowledge-distillation", model_type] if kind == "student" else ["teacher"])
    if p.get("dataset_id"):
        head["datasets"] = [p["dataset_id"]]
    scores = p.get("scores") or {}
    keys = [k for k in ("f1", "accuracy", "macro_f1", "mcc") if k in scores]
    if keys:
        head["metrics"] = keys
        dataset = {"name": str(p.get("data", "test")), "type": str(p.get("dataset_id") or p.get("data", "custom"))}
        head["model-index"] = [{"name": f"{p.get('data', 'tinydistill')}-{model_type}", "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {**dataset, "split": "test"},
            "metrics": [{"type": k, "value": round(float(scores[k]), 4), "name": METRIC_NAMES[k]} for k in keys]}]}]
    return head


def model_card(meta: dict, kind: str = "student") -> str:
    """A Hub model card (README.md) for a student (`config.json` contents) or a teacher (`teacher.json`)."""
    p = meta.get("provenance", {})
    labels = [str(x) for x in meta.get("labels", [])]
    rows: list[tuple[str, str]] = []
    if kind == "student":
        name = NAMES.get(meta.get("model_type", ""), meta.get("model_type", "student"))
        method = p.get("method", "trained")
        title = f"{name} student" + (f" of {p['teacher']}" if p.get("teacher") and method == "distilled" else "")
        export = meta.get("export")
        intro = (f"A tinydistill {name} text classifier ({method}"
                 + (f" from the teacher `{p['teacher']}`" if p.get("teacher") and method == "distilled" else "")
                 + "). It runs on numpy alone through `tinydistill.runtime`"
                 + (f"; this is a `{export['format']}` export" if export else "") + ".")
    else:
        title = f"Teacher fine-tuned from {p.get('teacher', 'an encoder')}"
        intro = ("A tinydistill teacher: a transformer encoder fine-tuned with a classification head on a few "
                 "labels, whose logits tinydistill distils into tiny students. It needs torch and transformers "
                 "(`tinydistill.Teacher.from_pretrained(folder)`).")
    if p.get("teacher") and kind == "student":
        teacher = f"`{p['teacher']}`" + (f" ({p['teacher_params']:,} parameters)" if p.get("teacher_params") else "")
        rows.append(("teacher", teacher + (f", recipe `{p['recipe']}`" if p.get("recipe") else "")))
    elif p.get("teacher"):
        rows.append(("base encoder", f"`{p['teacher']}`" + (f", recipe `{p['recipe']}`" if p.get("recipe") else "")))
    if p.get("data"):
        cols = f" (text column `{p['text_column']}`, label column `{p['label_column']}`)" \
            if p.get("text_column") and p.get("label_column") else ""
        rows.append(("data", f"`{p['data']}`{cols}"))
    if labels:
        rows.append(("labels", f"{len(labels)}: " + ", ".join(f"`{x}`" for x in labels)))
    if p.get("labeled") is not None:
        rows.append(("labelled examples", f"{p['labeled']:,}"))
    if p.get("transfer") is not None:
        grown = f", plus {p['variants']:,} augmentation variants of them" if p.get("variants") else ""
        rows.append(("transfer set", f"{p['transfer']:,} texts labelled by the teacher{grown}"))
    if p.get("embedding"):
        rows.append(("word embedding started from", p["embedding"]))
    if p.get("scores"):
        rows.append(("test scores", _score_line(p["scores"])))
    if p.get("teacher_scores") and kind == "student":
        rows.append(("teacher's test scores", _score_line(p["teacher_scores"])))
    if p.get("agreement") is not None:
        rows.append(("agreement with the teacher", f"{_pct(p['agreement'])}% of the test texts get its label"))
    if p.get("params"):
        rows.append(("parameters", f"{p['params']:,}"))
    if p.get("texts_per_s"):
        how = "numpy runtime, one thread, batches of 512" if kind == "student" else "torch, batches of 64"
        rows.append(("texts/s", f"{p['texts_per_s']:,.0f} ({how})"))
    if p.get("latency_ms"):
        rows.append(("batch-1 latency", f"{p['latency_ms']:.2f} ms"))
    if p.get("command"):
        rows.append(("made by", f"`{p['command']}`"))
    if p.get("created"):
        rows.append(("written", f"{p['created']} by tinydistill {p.get('tinydistill', '')}".rstrip()))
    table = "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v.replace('|', '&#124;')} |" for k, v in rows])
    usage = ('```python\nfrom tinydistill import runtime\n\nmodel = runtime.load("PATH_OR_HUB_ID")   '
             '# this folder, or its Hub repo id\nmodel.predict(["some text"])\n```\n\nor `tinydistill predict '
             'PATH_OR_HUB_ID texts.csv -o labelled.csv`, `tinydistill serve PATH_OR_HUB_ID`.\n') \
        if kind == "student" else ""
    return (f"---\n{_yaml(front_matter(meta, kind))}\n---\n\n# {title}\n\n{intro}\n\n{usage}\n## Provenance\n\n"
            f"{table}\n\nThe same record is in `{'config.json' if kind == 'student' else 'teacher.json'}` "
            "(its `provenance` entry).\n")
