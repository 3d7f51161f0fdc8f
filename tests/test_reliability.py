"""Nothing lost, nothing silently wrong: every bad input, damaged file and unlucky folder ends in one line.

A table of bad command lines run through `tinydistill.cli.main` (exit 2, a message fragment, one error line, no
traceback), then corruption tests for the logit cache and each saved artefact, the overwrite policy, `predict`
and `serve` edge cases, and a kill-and-resume test. Everything is tiny and built in-process.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill import runtime
from tinydistill.cli import main
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.folders import folder_kind, locked, make_room, staging, temp_prefix, write_atomic
from tinydistill.students import CBoWConfig, Student

LABELS = ["neg", "pos"]


def write_csv(path: Path, n: int, seed: int, extra: str = "") -> str:
    texts, labels = toy_texts(n, seed)
    path.write_text("text,label\n" + "".join(f"{t},{LABELS[y]}\n" for t, y in zip(texts, labels)) + extra)
    return str(path)


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_bert):
    """Files every case reads: data, a student, a teacher, a transfer file, pools and damaged copies."""
    root = tmp_path_factory.mktemp("reliability")
    write_csv(root / "train.csv", 120, 0)
    write_csv(root / "test.csv", 40, 1)
    write_csv(root / "lonely.csv", 60, 2, extra="a film of its own kind,odd\n")  # one example of class "odd"
    (root / "folder").mkdir()
    (root / "user").mkdir()
    (root / "user" / "thesis.txt").write_text("years of work\n")
    (root / "notes.jsonl").write_text("mine\n")
    (root / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 100)
    (root / "fake.txt.gz").write_bytes(b"not gzip at all")

    texts, labels = toy_texts(40)
    logits = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    student = Student("cbow", config=CBoWConfig(vocab_size=50, embed_dim=8, hidden_dim=8),
                      train=TrainConfig(epochs=2, min_steps=5))
    student.fit(texts, logits, LABELS, progress=False).save_pretrained(root / "run" / "students" / "cbow")
    (root / "run" / "results.json").write_text("{}")
    (root / "transfer.jsonl").write_text("".join(json.dumps({"text": t, "logits": [0.1, -0.1]}) + "\n"
                                                 for t in texts))
    (root / "ragged.jsonl").write_text('{"text": "a", "logits": [1, 2]}\n{"text": "b", "logits": [1, 2, 3]}\n')
    (root / "nan.jsonl").write_text('{"text": "a", "logits": [1, 2]}\n{"text": "b", "logits": [NaN, 2]}\n')

    from tinydistill.finetune import get_recipe, train_teacher

    recipe = get_recipe("paper", epochs=1, batch_size=8, max_length=16, lr=1e-3)
    train_teacher(tiny_bert, texts, labels, LABELS, recipe, progress=False).save_pretrained(root / "teacher")
    damaged(root)
    return root


def copy(root: Path, name: str, new: str) -> Path:
    return Path(shutil.copytree(root / name, root / new))


def edit_config(folder: Path, **changes) -> None:
    meta = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key == "tokenizer_max_length":
            meta["tokenizer"]["max_length"] = value
        elif value is None:
            meta.pop(key, None)
        else:
            meta["config"][key] = value
    (folder / "config.json").write_text(json.dumps(meta))


def flip_bytes(path: Path, count: int, start: int = 200) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def damaged(root: Path) -> None:
    """Damaged copies of the student, the teacher and pools, one fault each."""
    student = root / "run" / "students" / "cbow"
    shutil.copytree(student, root / "huge")
    edit_config(root / "huge", vocab_size=10**12)
    shutil.copytree(student, root / "tok")
    edit_config(root / "tok", tokenizer_max_length=-1)
    shutil.copytree(student, root / "flipped")
    flip_bytes(root / "flipped" / "model.safetensors", 2000)
    shutil.copytree(student, root / "flipped-data")  # the flipped bytes, in the tensors this time
    weights = root / "flipped-data" / "model.safetensors"
    flip_bytes(weights, 300, start=weights.stat().st_size - 300)
    shutil.copytree(student, root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(student, root / "nan")  # a folder saved before hashes existed, with a NaN weight
    from safetensors.numpy import save_file

    tensors = runtime.load_weights(student / "model.safetensors")
    tensors["ffn.0.weight"][0, 0] = np.nan
    save_file(tensors, str(root / "nan" / "model.safetensors"))
    edit_config(root / "nan", sha256=None)

    shutil.copytree(root / "teacher", root / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (root / "no-tokenizer" / "encoder" / name).unlink(missing_ok=True)
    shutil.copytree(root / "teacher", root / "bad-teacher")
    flip_bytes(root / "bad-teacher" / "head.safetensors", 16, start=100)
    shutil.copytree(root / "teacher", root / "bad-json-teacher")
    (root / "bad-json-teacher" / "teacher.json").write_text("{oops")

    def pool(name: str, shards: list, files: dict[str, bytes]) -> None:
        (root / name).mkdir()
        for file, data in files.items():
            (root / name / file).write_bytes(data)
        (root / name / "manifest.json").write_text(json.dumps(
            {"format": "tinydistill-pool", "version": 1, "settings": {}, "shards": shards, "complete": True}))

    (root / "baddata" / "sst2").mkdir(parents=True)  # a damaged download of a paper dataset
    (root / "baddata" / "sst2" / "labels.json").write_text('{"labels": ["negative", "positive"]}')
    (root / "baddata" / "sst2" / "train.tsv.gz").write_bytes(gzip.compress(b"text\tlabel\ngood\t1\n")[:20])
    (root / "nolabels" / "sst2").mkdir(parents=True)
    (root / "nolabels" / "sst2" / "train.tsv.gz").write_bytes(gzip.compress(b"text\tlabel\ngood\t1\n"))
    (root / "sentences.txt").write_text("a good film\na bad film\n")

    (root / "secret.txt.gz").write_bytes(gzip.compress(b"a private text\n"))
    pool("escape-pool", [{"file": "../secret.txt.gz", "lines": 1}], {})
    pool("fake-pool", [{"file": "shard-00000.txt.gz", "lines": 1}], {"shard-00000.txt.gz": b"plain bytes"})
    pool("missing-pool", [{"file": "shard-00000.txt.gz", "lines": 1}], {})


# ------------------------------------------------------------------------------------------ the table

R = "{root}"
RUN = ["run", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv", "--no-glove", "--out", f"{R}/out-run"]
CASES = [
    # numeric options: refused where they are parsed
    (RUN + ["--seed", "-1"], "--seed: -1 is not a whole number >= 0"),
    (RUN + ["--teacher-epochs", "-1"], "--teacher-epochs: -1 is not a number > 0"),
    (RUN + ["--teacher-epochs", "0", "--recipe", "paper"], "--teacher-epochs: 0 is not a number > 0"),
    (RUN + ["--teacher-lr", "-1"], "--teacher-lr: -1 is not a number > 0"),
    (RUN + ["--teacher-lr", "nan"], "--teacher-lr: nan is not a number > 0"),
    (RUN + ["--labeled", "0"], "--labeled: 0 is not a whole number >= 1"),
    (RUN + ["--transfer-size", "0"], "--transfer-size: 0 is not a whole number >= 1"),
    (RUN + ["--test-size", "0"], "--test-size: 0 is not a whole number >= 1"),
    (RUN + ["--grow-size", "0"], "--grow-size: 0 is not a whole number >= 1"),
    (RUN + ["--grow-below", "-1"], "--grow-below: -1 is not a whole number >= 0"),
    (RUN + ["--grow", "mlm"], "--grow: invalid choice: 'mlm'"),
    (RUN + ["--max-length", "1"], "--max-length: 1 is not a whole number >= 2"),
    (RUN + ["--labeled", "ten"], "--labeled: 'ten' is not a whole number"),
    (["--threads", "0", "evaluate", f"{R}/run/students/cbow"], "--threads: 0 is not a whole number >= 1"),
    (["predict", f"{R}/run/students/cbow", "--batch-size", "0"], "--batch-size: 0 is not"),
    (["predict", f"{R}/run/students/cbow", "--max-chars", "-5"], "--max-chars: -5 is not"),
    (["serve", f"{R}/run/students/cbow", "--port", "70000"], "--port: 70000 is not a whole number from 0 to 65535"),
    (["serve", f"{R}/run/students/cbow", "--idle-timeout", "0"], "--idle-timeout: 0 is not a number > 0"),
    (["augment", "--data", "sst2", "--out", f"{R}/p", "--size", "0"], "--size: 0 is not"),
    (["distil", f"{R}/transfer.jsonl", "--out", f"{R}/s", "--seed", "-2"], "--seed: -2 is not"),
    # folders and files where something else belongs
    (["run", "--data", f"{R}/folder", "--out", f"{R}/out-run"], "a folder; expected a .csv"),
    (RUN[:3] + ["--test", f"{R}/folder.csv"], "folder.csv: file not found"),
    (["evaluate", f"{R}/run/students/cbow", "--data", f"{R}/train.csv", "--test", f"{R}/folder"], "a folder"),
    (["evaluate", f"{R}/run/students/cbow", "--data", "sst2", "--data-dir", f"{R}/baddata"],
     "train.tsv.gz:1: not a readable gzip file"),
    (["evaluate", f"{R}/run/students/cbow", "--data", "sst2", "--data-dir", f"{R}/nolabels"],
     "labels.json: expected"),
    (["augment", "--data", f"{R}/sentences.txt", "--out", f"{R}/notes.jsonl", "--size", "5"],
     "notes.jsonl: a file; the pool needs a folder"),
    (RUN + ["--transfer", f"{R}/missing.txt"], "missing.txt: transfer file not found"),
    (RUN + ["--transfer", f"{R}/binary.txt"], "binary.txt: not UTF-8 text"),
    (RUN + ["--transfer", f"{R}/fake.txt.gz"], "fake.txt.gz: not a readable gzip file"),
    (RUN + ["--transfer", f"{R}/fake-pool"], "shard-00000.txt.gz: not a readable gzip shard"),
    (RUN + ["--transfer", f"{R}/missing-pool"], "shard-00000.txt.gz: shard missing"),
    (RUN + ["--transfer", f"{R}/escape-pool"], "must name a file inside the pool"),
    (["distil", f"{R}/folder", "--out", f"{R}/s"], "expected a JSON Lines file or a logit shard folder"),
    (["predict", f"{R}/run/students/cbow", f"{R}/folder"], "folder: a folder; expected an input file"),
    (["predict", f"{R}/run/students/cbow", f"{R}/train.csv", "-o", f"{R}/nowhere/out.jsonl"],
     "folder " + R + "/nowhere does not exist"),
    (["predict", f"{R}/run/students/cbow", f"{R}/train.csv", "-o", f"{R}/folder"], "folder: is a folder"),
    # a class that a held-out split would leave out of training
    (["run", "--data", f"{R}/lonely.csv", "--no-glove", "--out", f"{R}/out-run"],
     "no training example of class 'odd'"),
    # outputs that would replace what tinydistill did not write, or their own source
    (RUN[:-1] + [f"{R}/user"], "user: exists and is a folder that tinydistill did not write, not a run folder"),
    (["train-teacher", "--data", f"{R}/train.csv", "--out", f"{R}/user"], "not a teacher folder"),
    (["train-teacher", "--data", f"{R}/train.csv", "--out", f"{R}/run/students/cbow"],
     "is a student folder, not a teacher folder"),
    (["distil", f"{R}/transfer.jsonl", "--out", f"{R}/user"], "not a student folder"),
    (["distil", f"{R}/transfer.jsonl", "--out", R, "--overwrite"], "a folder above its source"),
    (["train-teacher", "--data", f"{R}/train.csv", "--out", R, "--overwrite"], "a folder above its source"),
    (["train-teacher", "--data", f"{R}/train.csv", "--teacher", f"{R}/teacher/encoder", "--out",
      f"{R}/teacher/encoder", "--overwrite"], "replace its own source"),
    (["distil", f"{R}/transfer.jsonl", "--out", f"{R}/teacher"], "is a teacher folder, not a student folder"),
    (["export", f"{R}/run/students/cbow", "--out", f"{R}/user"], "not a student folder"),
    (["export", f"{R}/run/students/cbow", "--out", f"{R}/run"], "a folder above its source"),
    (["export", f"{R}/run/students/cbow", "--out", f"{R}/run", "--overwrite"], "a folder above its source"),
    (["export", f"{R}/run/students/cbow", "--out", f"{R}/run/students/cbow"], "replace its own source"),
    (["export", f"{R}/run", "--out", f"{R}/user"], "not a folder of exported students"),
    (["export", f"{R}/run", "--out", f"{R}/teacher"], "is a teacher folder"),
    (["label", f"{R}/teacher", "--data", f"{R}/train.csv", "--out", f"{R}/notes.jsonl"],
     "notes.jsonl: exists and was not written by tinydistill"),
    (["label", f"{R}/teacher", "--data", f"{R}/train.csv", "--out", f"{R}/user"],
     "user: is a folder with files label did not write (thesis.txt)"),
    # damaged models
    (["evaluate", f"{R}/huge", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"],
     "vocab_size is 1000000000000; expected a whole number from 1 to"),
    (["predict", f"{R}/huge", f"{R}/train.csv"], "vocab_size is 1000000000000"),
    (["evaluate", f"{R}/tok", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"],
     "tokenizer max_length is -1"),
    (["evaluate", f"{R}/flipped", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"], "model.safetensors"),
    (["predict", f"{R}/flipped", f"{R}/train.csv"], "model.safetensors"),
    (["evaluate", f"{R}/flipped-data", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"],
     "model.safetensors: corrupt: its sha256 differs"),
    (["predict", f"{R}/flipped-data", f"{R}/train.csv"], "model.safetensors: corrupt: its sha256 differs"),
    (["export", f"{R}/flipped-data", "--out", f"{R}/e1"], "model.safetensors: corrupt: its sha256 differs"),
    (["distil", f"{R}/ragged.jsonl", "--out", f"{R}/s"], "ragged.jsonl:2: expected a text and 2 finite logits"),
    (["distil", f"{R}/nan.jsonl", "--out", f"{R}/s"], "nan.jsonl:2: expected a text and 2 finite logits"),
    (["evaluate", f"{R}/truncated", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"],
     "model.safetensors: truncated"),
    (["predict", f"{R}/truncated", f"{R}/train.csv"], "model.safetensors: truncated"),
    (["evaluate", f"{R}/nan", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"], "NaN or infinite"),
    (["predict", f"{R}/nan", f"{R}/train.csv"], "NaN or infinite"),
    (["label", f"{R}/no-tokenizer", "--data", f"{R}/train.csv", "--out", f"{R}/l1.jsonl"], "no usable tokenizer"),
    (["run", "--data", f"{R}/train.csv", "--teacher", f"{R}/no-tokenizer/encoder", "--out", f"{R}/out-run"],
     "no usable tokenizer"),
    (["run", "--data", f"{R}/train.csv", "--teacher", f"{R}/folder", "--out", f"{R}/out-run"],
     "no usable tokenizer"),
    (["label", f"{R}/bad-teacher", "--data", f"{R}/train.csv", "--out", f"{R}/l2.jsonl"],
     "head.safetensors: corrupt: its sha256 differs"),
    (["label", f"{R}/bad-json-teacher", "--data", f"{R}/train.csv", "--out", f"{R}/l3.jsonl"], "not valid JSON"),
    (["label", f"{R}/folder", "--data", f"{R}/train.csv", "--out", f"{R}/l4.jsonl"], "teacher.json: missing"),
    (["evaluate", f"{R}/folder", "--data", f"{R}/train.csv", "--test", f"{R}/test.csv"], "missing config file"),
]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[f"{i:02d}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2(place, argv, fragment, capsys, monkeypatch):
    monkeypatch.setenv("TINYDISTILL_CACHE", str(place / "cache"))
    argv = [arg.replace(R, str(place)) for arg in argv]
    before = sorted(str(p.relative_to(place)) for p in place.rglob("*") if "cache" not in p.parts)
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tinydistill: error:"), err
    assert fragment.replace(R, str(place)) in last, err
    after = sorted(str(p.relative_to(place)) for p in place.rglob("*") if "cache" not in p.parts)
    assert [p for p in before if p not in after] == []  # a refusal deletes nothing
    assert (place / "user" / "thesis.txt").read_text() == "years of work\n"


# ---------------------------------------------------------------------------------------- overwrite


def test_overwrite_replaces_only_when_asked(place, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    student = place / "run" / "students" / "cbow"
    assert main(["-q", "export", str(student), "--out", str(out)]) == 2
    assert (out / "keep.txt").exists()
    assert main(["-q", "export", str(student), "--out", str(out), "--overwrite"]) == 0
    assert runtime.load(out).classes_.tolist() == LABELS and not (out / "keep.txt").exists()
    assert main(["-q", "export", str(student), "--out", str(out)]) == 0  # a student folder: replaced freely
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left behind
    capsys.readouterr()


def test_folder_kinds_and_hashes(place):

    assert folder_kind(place / "run") == "run"
    assert folder_kind(place / "run" / "students" / "cbow") == "student"
    assert folder_kind(place / "teacher") == "teacher"
    assert folder_kind(place / "user") is None and folder_kind(place / "notes.jsonl") is None
    meta = json.loads((place / "run" / "students" / "cbow" / "config.json").read_text())
    assert set(meta["sha256"]) == {"model.safetensors"}
    teacher = json.loads((place / "teacher" / "teacher.json").read_text())
    assert {"head.safetensors", "encoder/model.safetensors"} <= set(teacher["sha256"])


def test_a_folder_saved_before_hashes_still_loads(place, tmp_path):
    legacy = Path(shutil.copytree(place / "run" / "students" / "cbow", tmp_path / "legacy"))
    edit_config(legacy, sha256=None)
    assert runtime.load(legacy).classes_.tolist() == LABELS
    assert Student.from_pretrained(legacy).classes_.tolist() == LABELS
    from tinydistill.teacher import Teacher

    old = Path(shutil.copytree(place / "teacher", tmp_path / "old-teacher"))
    meta = json.loads((old / "teacher.json").read_text())
    del meta["sha256"]
    (old / "teacher.json").write_text(json.dumps(meta))
    assert Teacher.from_pretrained(old).classes_.tolist() == LABELS


def test_runs_on_one_folder_take_turns(tmp_path):

    order: list[str] = []

    def first() -> None:
        with locked(tmp_path):
            order.append("first in")
            time.sleep(0.5)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    while not order:
        time.sleep(0.01)
    with locked(tmp_path):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_a_corrupt_teacher_in_the_run_folder_is_replaced_by_its_cached_copy(place, tiny_bert, tmp_path,
                                                                             monkeypatch, caplog):
    import tinydistill.pipeline as pipeline
    from tinydistill.task import load_task
    from tinydistill.teacher import Teacher

    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    c = pipeline.RunConfig(data=str(place / "train.csv"), test=str(place / "test.csv"), labeled=20,
                           teacher=tiny_bert, recipe="paper", teacher_epochs=1, max_length=16, out=str(tmp_path))
    task = load_task(c, transfer=False)
    first = pipeline.get_teacher(c, task, tmp_path / "teacher", progress=False)
    flip_bytes(tmp_path / "teacher" / "head.safetensors", 16, start=100)
    monkeypatch.setattr(pipeline, "train_teacher", lambda *a, **k: pytest.fail("retrained"))
    again = pipeline.get_teacher(c, task, tmp_path / "teacher", progress=False)
    assert again.fingerprint == first.fingerprint and "ignoring the copy" in caplog.text
    assert Teacher.from_pretrained(tmp_path / "teacher").fingerprint == first.fingerprint  # repaired from the cache


def test_concurrent_saves_of_one_folder_all_succeed(place, tmp_path):
    """Two runs saving the same teacher into the shared cache once died in a SafetensorError (one temp folder)."""
    student = Student.from_pretrained(place / "run" / "students" / "cbow")
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(5):
                student.save_pretrained(tmp_path / "shared")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert runtime.load(tmp_path / "shared").classes_.tolist() == LABELS
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no staging or old folders left


# ---------------------------------------------------------------------------------------- logit cache


def test_damaged_cache_rows_are_recomputed(place, tmp_path, caplog):
    from tinydistill.logitcache import LogitCache
    from tinydistill.teacher import Teacher

    teacher = Teacher.from_pretrained(place / "teacher")
    texts = toy_texts(12, 3)[0]
    cache = LogitCache(tmp_path / "logits.sqlite")
    clean = teacher.logits(texts, cache=cache, progress=False)
    with cache.db:  # the 1e30, a NaN and a row of the wrong length
        for text, value in zip(texts, ([1e30, 0.0], [np.nan, 1.0], [1.0, 2.0, 3.0])):
            cache.db.execute("UPDATE logits SET value=? WHERE key=?",
                             (np.asarray(value, np.float32).tobytes(), cache._key(text)))
    again = teacher.logits(texts, cache=cache, progress=False)
    np.testing.assert_allclose(again, clean, atol=1e-5)
    assert "3 cached row(s)" in caplog.text and "recomputing" in caplog.text
    assert all(row is not None for row in cache.get(teacher.fingerprint, texts, width=2))  # written again


def test_old_cache_rows_are_read_as_they_are(tmp_path):
    from tinydistill.logitcache import LogitCache

    db = sqlite3.connect(tmp_path / "logits.sqlite")  # as the code before this change wrote it
    db.execute("CREATE TABLE logits (teacher TEXT, key BLOB, value BLOB, PRIMARY KEY (teacher, key))")
    with db:
        db.execute("INSERT INTO logits VALUES (?, ?, ?)",
                   ("t", LogitCache._key("hello"), np.asarray([0.5, -0.5], np.float32).tobytes()))
    db.close()
    rows = LogitCache(tmp_path / "logits.sqlite").get("t", ["hello", "other"], width=2)
    assert rows[0].tolist() == [0.5, -0.5] and rows[1] is None


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_cache_file_is_set_aside(place, tmp_path, caplog, damage):
    from tinydistill.logitcache import LogitCache
    from tinydistill.teacher import Teacher

    teacher = Teacher.from_pretrained(place / "teacher")
    texts = [f"{t} {i}" for i, t in enumerate(toy_texts(60, 4)[0] * 40)]  # enough rows for several pages
    path = tmp_path / "logits.sqlite"
    clean = teacher.logits(texts[:5], cache=LogitCache(path), progress=False)
    LogitCache(path).put("filler", texts, np.zeros((len(texts), 2), np.float32))
    if damage == "truncate":
        with path.open("r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
    else:
        path.write_bytes(b"this is not a database" * 100)
    again = teacher.logits(texts[:5], cache=LogitCache(path), progress=False)
    np.testing.assert_allclose(again, clean, atol=1e-5)
    assert "unreadable" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]  # kept for a look, out of the way


# ---------------------------------------------------------------------------------------- data files


def test_a_byte_order_mark_reads_like_none(tmp_path):
    from tinydistill.data import load_file

    plain = write_csv(tmp_path / "plain.csv", 10, 0)
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + Path(plain).read_bytes())
    a, b = load_file(plain), load_file(marked)
    assert (a.texts, a.labels, a.label_names) == (b.texts, b.labels, b.label_names)


def test_a_five_megabyte_csv_field_is_read(tmp_path):
    from tinydistill.data import load_file

    (tmp_path / "long.csv").write_text("text,label\n" + "good " * 1_000_000 + ",pos\nbad,neg\n")
    split = load_file(tmp_path / "long.csv")
    assert len(split.texts[0]) == 5_000_000 and split.label_names == ["neg", "pos"]


def test_a_row_with_more_fields_than_the_header_is_an_error_not_a_cut_text(tmp_path):
    from tinydistill.data import load_file

    (tmp_path / "comma.csv").write_text("text,label\ngood film,pos\na gorgeous, witty film,pos\n")
    with pytest.raises(TinyDistillError, match=r"comma.csv:3: 3 fields where the header has 2; put a text holding a "
                                               r"comma in double quotes"):
        load_file(tmp_path / "comma.csv")
    (tmp_path / "tab.tsv").write_text("text\tlabel\ngood\tfilm\tpos\n")
    with pytest.raises(TinyDistillError, match=r"tab.tsv:2: 3 fields where the header has 2; a text holding a tab"):
        load_file(tmp_path / "tab.tsv")
    # quoted, or a trailing empty field (a spreadsheet's export), reads as before
    (tmp_path / "ok.csv").write_text('text,label\n"a gorgeous, witty film",pos\nbad,neg,\n')
    assert load_file(tmp_path / "ok.csv").texts == ["a gorgeous, witty film", "bad"]


def test_settings_are_checked_in_the_library_too():
    from tinydistill.finetune import Recipe, get_recipe
    from tinydistill.pipeline import RunConfig

    for bad in ({"labeled": 0}, {"test_size": 0}, {"transfer_size": -3}, {"seed": -1}, {"teacher_lr": -1.0},
                {"teacher_epochs": 0}, {"max_length": 1}, {"students": []}):
        with pytest.raises(TinyDistillError):
            RunConfig(**bad)  # type: ignore[arg-type]
    for bad in ({"lr": 0}, {"epochs": 0}, {"batch_size": 0}, {"temperature": 0}, {"seed": -1}, {"alpha": 2}):
        with pytest.raises(TinyDistillError):
            TrainConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(TinyDistillError, match="would not train at all"):
        get_recipe("paper", epochs=0)
    with pytest.raises(TinyDistillError, match="teacher learning rate"):
        Recipe(lr=-1)
    assert get_recipe("contrastive").epochs == 0  # a head fit after contrastive steps: not nothing


# ---------------------------------------------------------------------------------------- predict


def test_predict_writes_nothing_for_no_input(place, tmp_path, capsys):
    from tinydistill.deploy import predict_file

    (tmp_path / "empty.txt").write_text("")
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"out.{fmt}"
        assert predict_file(place / "run" / "students" / "cbow", str(tmp_path / "empty.txt"), str(out),
                            progress=False) == 0
        assert out.read_text() == ""
    assert main(["-q", "predict", str(place / "run" / "students" / "cbow"), str(tmp_path / "empty.txt")]) == 0
    assert capsys.readouterr().out == ""


def test_predict_cuts_long_texts_before_tokenising(place, monkeypatch):
    import io

    from tinydistill.deploy import PredictionWriter, predict_stream

    model = runtime.load(place / "run" / "students" / "cbow")
    seen: list[int] = []
    real = model.encoder

    class Spy:  # the model's encoder, noting the length of every text it is given
        def __call__(self, texts):
            seen.extend(map(len, texts))
            return real(texts)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(model, "encoder", Spy())
    long = "good " * 200_000
    out = io.StringIO()
    writer = PredictionWriter(out, "jsonl", model.classes_.tolist())
    assert predict_stream(model, iter([(long, {}), ("bad", {})]), writer, max_chars=1000) == 2
    assert seen == [1000, 3]
    assert json.loads(out.getvalue().splitlines()[0])["label"] == model.predict([long[:1000]])[0]


def test_predict_into_a_closed_pipe_ends_quietly(place, tmp_path):
    (tmp_path / "many.txt").write_text("good film\nawful plot\n" * 2000)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    process = subprocess.Popen([sys.executable, "-m", "tinydistill.cli", "-q", "predict",
                                str(place / "run" / "students" / "cbow"), str(tmp_path / "many.txt"),
                                "--batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # `| head -1`
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, err
    assert json.loads(first)["label"] in LABELS and "Traceback" not in err and "Broken" not in err


# ---------------------------------------------------------------------------------------- serve


def test_serve_token_and_no_paths_in_metadata(place, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tinydistill.export import export
    from tinydistill.serve import create_app

    exported = export(place / "run" / "students" / "cbow", tmp_path / "cbow-int8", "int8")[0]
    client = TestClient(create_app(runtime.load(exported), token="s3cret"))
    assert client.get("/health").status_code == 200  # liveness stays open
    assert client.post("/predict", json={"text": "good"}).status_code == 401
    wrong = client.post("/predict", json={"text": "good"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
    auth = {"Authorization": "Bearer s3cret"}
    assert client.post("/predict", json={"text": "good"}, headers=auth).json()["label"] in LABELS
    meta = client.get("/metadata", headers=auth)
    assert meta.status_code == 200
    assert str(tmp_path) not in meta.text and str(place) not in meta.text and meta.json()["export"]["source"] == "cbow"


def test_serve_warns_beyond_loopback_without_a_token(place, monkeypatch, caplog):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    monkeypatch.delenv("TINYDISTILL_TOKEN", raising=False)
    assert main(["-q", "serve", str(place / "run" / "students" / "cbow"), "--host", "0.0.0.0"]) == 0
    assert "without a token" in caplog.text and calls["http"].__name__ == "IdleTimeout"
    caplog.clear()
    monkeypatch.setenv("TINYDISTILL_TOKEN", "from-env")
    assert main(["-q", "serve", str(place / "run" / "students" / "cbow"), "--host", "0.0.0.0"]) == 0
    assert "without a token" not in caplog.text
    client = TestClient(calls["app"])
    assert client.get("/metadata").status_code == 401
    assert client.get("/metadata", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_serve_answers_500_on_nan_scores(place):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tinydistill.serve import create_app

    model = runtime.load(place / "run" / "students" / "cbow")
    model.forward = lambda ids, lengths: np.full((len(lengths), 2), np.nan, np.float32)
    response = TestClient(create_app(model)).post("/predict", json={"text": "good"})
    assert response.status_code == 500 and "NaN" in response.json()["error"]


def test_serve_drops_idle_connections(place):
    pytest.importorskip("uvicorn")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    server = subprocess.Popen([sys.executable, "-m", "tinydistill.cli", "-q", "serve",
                               str(place / "run" / "students" / "cbow"), "--port", str(port), "--idle-timeout", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 60
        while True:
            try:
                idle = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        with idle:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half a request, then silence
            idle.settimeout(10)
            started = time.time()
            assert idle.recv(100) == b""  # closed by the server
            assert time.time() - started < 5
        with socket.create_connection(("127.0.0.1", port), timeout=1) as slow:  # a byte every half timeout
            started = time.time()
            closed = False
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.5)
                if time.time() - started > 15:
                    break
            if not closed:
                slow.settimeout(5)
                try:
                    closed = slow.recv(100) == b""
                except OSError:
                    closed = True
            assert closed and time.time() - started < 15  # the 4 s request deadline, not the 1 s idle timeout
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


# ---------------------------------------------------------------------------------------- kill and resume


def _run_command(place: Path, tiny_bert: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "tinydistill.cli", "-q", "--threads", "1", "run", "--data", str(place / "train.csv"),
            "--test", str(place / "test.csv"), "--labeled", "40", "--teacher", tiny_bert, "--recipe", "paper",
            "--teacher-epochs", "3", "--teacher-lr", "1e-3", "--max-length", "16", "--students", "cbow,bilstm",
            "--no-nods", "--no-speed", "--no-glove", "--out", str(out)]


def _run_env(cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path]),
            "TINYDISTILL_CACHE": str(cache)}


@pytest.fixture(scope="module")
def uninterrupted(place, tiny_bert, tmp_path_factory) -> list:
    out = tmp_path_factory.mktemp("whole")
    done = subprocess.run(_run_command(place, tiny_bert, out / "run"), env=_run_env(out / "cache"),
                          capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads((out / "run" / "results.json").read_text())["rows"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["run.json", "teacher/teacher.json", "students/cbow/train.json"],
                         ids=["teacher", "labels-and-first-student", "second-student"])
def test_a_killed_run_resumes_to_the_same_results(place, tiny_bert, tmp_path, uninterrupted, kill_after):
    """Kill `tinydistill run` (SIGKILL) in each stage, rerun it: the same results as a run never killed."""
    out, env = tmp_path / "run", _run_env(tmp_path / "cache")
    killed = subprocess.Popen(_run_command(place, tiny_bert, out), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / kill_after).exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # into the next stage's work
    killed.kill()
    killed.wait()
    assert not (out / "results.json").exists()
    done = subprocess.run(_run_command(place, tiny_bert, out), env=env, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode()
    resumed = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["model"], r["accuracy"], r["macro_f1"]) for r in uninterrupted] == \
        [(r["model"], r["accuracy"], r["macro_f1"]) for r in resumed]


def test_what_a_killed_writer_left_is_swept_by_the_next_write(tmp_path):
    dead, live = 999_999_999, 1  # no such process; init, always there
    leftovers = [tmp_path / f"{temp_prefix('results.json', dead)}k2j4.tmp",
                 tmp_path / f"{temp_prefix('cbow', dead)}x9.tmp", tmp_path / f"{temp_prefix('cbow', dead)}77aa.old"]
    kept = [tmp_path / f"{temp_prefix('results.json', live)}a1.tmp",
            tmp_path / f"{temp_prefix('other.json', dead)}1.tmp",
            tmp_path / f".results.json.{dead}-elsewhere.b2.tmp"]  # another machine's writer, on a shared disk
    for path in leftovers[:1] + kept:
        path.write_text("half")
    for path in leftovers[1:]:
        (path / "sub").mkdir(parents=True)
    write_atomic(tmp_path / "results.json", "{}")
    fresh = staging(tmp_path / "cbow")
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in kept) and fresh.is_dir() and (tmp_path / "results.json").read_text() == "{}"


def test_run_checks_its_parts_before_any_work_and_overwrite_reaches_them(place, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "teacher").mkdir(parents=True)
    (run / "run.json").write_text('{"format": "tinydistill-run", "version": 1}')
    (run / "teacher" / "notes.txt").write_text("mine")
    argv = ["-q", "run", "--data", str(place / "train.csv"), "--test", str(place / "test.csv"), "--out", str(run)]
    assert main(argv) == 2  # refused at once: no data loaded, no teacher trained
    assert f"{run / 'teacher'}: exists and is a folder that tinydistill did not write" in capsys.readouterr().err
    assert (run / "teacher" / "notes.txt").exists()
    # what --overwrite does to each part before the run fills it: a user's folder goes, a folder of the kind stays
    assert make_room(run / "teacher", "teacher", overwrite=True) == run / "teacher"
    assert not (run / "teacher").exists()
    student = place / "run" / "students" / "cbow"
    assert make_room(student, "student", overwrite=True) == student and (student / "config.json").exists()
