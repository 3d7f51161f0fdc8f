"""Logit shards (local engine, streaming distil) and the Ray engine (marked `scale`: a local Ray in-process)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill import shards, sources
from tinydistill.cli import main


@pytest.fixture(scope="module")
def teacher_dir(tiny_bert, tmp_path_factory) -> str:
    """A saved, untrained classifier over the tiny BERT: random logits cost the same arithmetic."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tinydistill.teacher import Classifier, Teacher

    torch.manual_seed(0)
    model = Classifier(AutoModel.from_pretrained(tiny_bert), 2, "cls").eval()
    folder = tmp_path_factory.mktemp("teacher") / "t"
    Teacher(model, AutoTokenizer.from_pretrained(tiny_bert), ["neg", "pos"], max_length=32).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> str:
    texts = toy_texts(110, seed=3)[0]
    texts[5] = texts[5] + " " + " ".join(texts[:6])  # a long one: padding differs between batches
    path = tmp_path_factory.mktemp("data") / "transfer.txt"
    path.write_text("\n".join(texts[:50]) + "\n\n" + "\n".join(texts[50:]) + "\n")  # a blank line is no text
    return str(path)


def _read_all(folder: str) -> tuple[list[str], np.ndarray]:
    source = shards.LogitShards(folder)
    return source.read(0, len(source))


def test_plan_reads_every_format_and_row_range(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"text number {i}" for i in range(23)]
    (tmp_path / "a.txt").write_text("\n".join(texts[:10]) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t, "x": 1}) + "\n" for t in texts[10:15]))
    (tmp_path / "c.csv").write_text("text,label\n" + "".join(f'"{t}",1\n' for t in texts[15:18]))
    pq.write_table(pa.table({"text": texts[18:]}), tmp_path / "d.parquet", row_group_size=2)
    specs = sources.plan_shards(str(tmp_path), 4)
    assert [s["stop"] - s["start"] for s in specs] == [4, 4, 2, 4, 1, 3, 4, 1]
    assert [t for s in specs for t in sources.read_texts(s)] == texts
    assert specs[1]["offset"] > 0  # the second shard of a text file starts at its byte offset


def test_local_shards_equal_the_teacher_and_distil_matches_one_file(teacher_dir, texts_file, tmp_path, monkeypatch):
    from tinydistill.teacher import Teacher

    out = str(tmp_path / "logits")
    assert main(["-q", "label", teacher_dir, "--data", texts_file, "--out", out, "--shard-rows", "32",
                 "--batch-size", "8"]) == 0
    manifest = shards.read_manifest(out)
    assert manifest["rows"] == 110 and len(manifest["shards"]) == 4 and manifest["labels"] == ["neg", "pos"]
    texts, logits = _read_all(out)
    lines = [line for line in open(texts_file).read().split("\n") if line.strip()]
    assert texts == lines
    teacher = Teacher.from_pretrained(teacher_dir)
    expected = np.concatenate([teacher.logits(lines[s: s + 32], batch_size=8, progress=False)
                               for s in range(0, 110, 32)])
    assert logits.dtype == np.float32 and np.array_equal(logits, expected)

    # the same rows in one JSON Lines file give the same student as the shard folder, streamed in blocks of 20
    # rows (across the 32-row shards); no read asks for more than a block
    from tinydistill import distill

    monkeypatch.setattr(distill, "BLOCK_ROWS", 20)
    reads: list[int] = []
    real_read = shards.LogitShards.read
    monkeypatch.setattr(shards.LogitShards, "read", lambda self, a, b: (reads.append(b - a), real_read(self, a, b))[1])
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps({"text": t, "logits": row.tolist()}) + "\n" for t, row in zip(texts, logits)))
    (tmp_path / "one.labels.json").write_text(json.dumps(["neg", "pos"]))
    for source, folder in ((out, "from-shards"), (str(one), "from-file")):
        assert main(["-q", "distil", source, "--out", str(tmp_path / folder)]) == 0
    assert reads and max(reads) <= 20
    a = (tmp_path / "from-shards" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "from-file" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "from-shards" / "config.json").read_text())["labels"] == ["neg", "pos"]


def test_a_rerun_labels_only_missing_or_broken_shards(teacher_dir, texts_file, tmp_path, monkeypatch):
    out = str(tmp_path / "logits")
    shards.label_to_shards(teacher_dir, texts_file, out, rows_per_shard=32, progress=False)
    before = _read_all(out)
    (tmp_path / "logits" / "part-00001.parquet").unlink()  # a shard the kill never wrote
    broken = tmp_path / "logits" / "part-00003.parquet"
    broken.write_bytes(broken.read_bytes()[:-40])  # and one cut short
    calls = []
    real = shards.label_shard
    monkeypatch.setattr(shards, "label_shard", lambda teacher, spec, o, index, *rest: (
        calls.append(index), real(teacher, spec, o, index, *rest))[1])
    manifest = shards.label_to_shards(teacher_dir, texts_file, out, rows_per_shard=32, progress=False)
    assert calls == [1, 3] and manifest["labelled"] == 2
    after = _read_all(out)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])
    # a changed shard that still parses is caught by the checksum the manifest recorded
    calls.clear()
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "logits" / "part-00000.parquet")
    pq.write_table(table.slice(0, 32), tmp_path / "logits" / "part-00000.parquet", compression="gzip")
    shards.label_to_shards(teacher_dir, texts_file, out, rows_per_shard=32, progress=False)
    assert calls == [0]


def test_another_teacher_or_input_is_refused(teacher_dir, texts_file, tmp_path):
    out = str(tmp_path / "logits")
    shards.label_to_shards(teacher_dir, texts_file, out, rows_per_shard=32, progress=False)
    with pytest.raises(shards.TinyDistillError, match="another input or teacher"):
        shards.label_to_shards(teacher_dir, texts_file, out, rows_per_shard=16, progress=False)


def test_ray_engine_without_ray_is_one_line(monkeypatch, teacher_dir, texts_file, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the scale extra were not installed
    out = str(tmp_path / "o")
    for args in (["label", teacher_dir, "--data", texts_file, "--out", out, "--engine", "ray"],
                 ["augment", "--data", texts_file, "--out", out, "--engine", "ray"]):
        capsys.readouterr()
        assert main(["-q", *args]) == 2
        assert capsys.readouterr().err == ("tinydistill: error: --engine ray needs Ray: "
                                           "pip install 'tinydistill[scale]'\n")


def test_uris_in_and_out_and_bad_input(teacher_dir, texts_file, tmp_path, capsys):
    out = "file://" + str(tmp_path / "o")
    manifest = shards.label_to_shards(teacher_dir, "file://" + texts_file, out, rows_per_shard=64, progress=False)
    lines = [line for line in open(texts_file).read().split("\n") if line.strip()]
    assert manifest["rows"] == 110 and shards.LogitShards(out).read(100, 110)[0] == lines[100:110]
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text"}\n')
    for args, message in ((["distil", str(tmp_path / "none"), "--out", str(tmp_path / "s")], "file not found"),
                          (["label", teacher_dir, "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x")],
                           "bad.jsonl:2: empty or missing text in column 'text'"),
                          (["label", teacher_dir, "--data", texts_file, "--out", str(tmp_path / "y"), "--shard-rows",
                            "0"], "--shard-rows: 0 is not a whole number >= 1"),
                          (["label", teacher_dir, "--data", texts_file, "--out", "x.jsonl", "--engine", "ray"],
                           "--engine ray writes a folder")):
        capsys.readouterr()
        assert main(["-q", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("tinydistill: error: ") and err.count("\n") == 1


def test_run_streams_a_shard_folder_its_teacher_labelled(tiny_bert, teacher_dir, tmp_path, monkeypatch):
    from test_pipeline import config, write_csv

    from tinydistill.pipeline import run
    from tinydistill.teacher import Teacher

    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    files = write_csv(tmp_path / "train.csv", 200, 0), write_csv(tmp_path / "test.csv", 60, 1)
    base = config(files, tiny_bert, tmp_path, nods=False, speed=False)
    run(base, progress=False)  # trains the teacher into run/teacher
    extra = tmp_path / "extra.txt"
    extra.write_text("\n".join(toy_texts(90, seed=7)[0]) + "\n")
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    shards.label_to_shards(str(tmp_path / "run" / "teacher"), str(extra), ours, rows_per_shard=40, progress=False)
    shards.label_to_shards(teacher_dir, str(extra), theirs, rows_per_shard=40, progress=False)
    seen: list[str] = []
    real = Teacher.logits
    monkeypatch.setattr(Teacher, "logits", lambda self, texts, **kw: (seen.extend(texts), real(self, texts, **kw))[1])
    results = run(config(files, tiny_bert, tmp_path, nods=False, speed=False, transfer=[ours]), progress=False)
    assert results["sizes"]["transfer"] == 200 + 90
    assert not set(toy_texts(90, seed=7)[0]) - set(toy_texts(200, 0)[0]) & set(seen)  # read, not relabelled
    assert results["rows"][1]["accuracy"] >= 0.7
    seen.clear()  # another teacher's logits: their texts are labelled again by the run's teacher
    results = run(config(files, tiny_bert, tmp_path, nods=False, speed=False, transfer=[theirs],
                         out=str(tmp_path / "run2")), progress=False)
    assert results["sizes"]["transfer"] == 200 + 90 and set(toy_texts(90, seed=7)[0]) <= set(seen)


# ------------------------------------------------------------------------------------------- Ray (scale)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    from tinydistill.scale import settle

    settle()  # the failed runs' iterators too, before Ray goes
    ray.shutdown()


@pytest.mark.scale
def test_ray_logits_equal_local_and_a_killed_run_resumes(local_ray, teacher_dir, texts_file, tmp_path, monkeypatch):
    from tinydistill.scale import ray_engine

    local, remote = str(tmp_path / "local"), str(tmp_path / "ray")
    shards.label_to_shards(teacher_dir, texts_file, local, rows_per_shard=32, batch_size=8, progress=False)
    assert main(["-q", "label", teacher_dir, "--data", texts_file, "--out", remote, "--engine", "ray", "--workers", "2",
                 "--shard-rows", "32", "--batch-size", "8"]) == 0
    a, b = _read_all(local), _read_all(remote)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])  # bit for bit
    assert shards.read_manifest(local)["shards"] == shards.read_manifest(remote)["shards"]

    # a kill half way: two shards never written, no manifest; the rerun labels those two only
    for name in ("part-00000.parquet", "part-00002.parquet", "manifest.json"):
        (tmp_path / "ray" / name).unlink()
    assert main(["-q", "label", teacher_dir, "--data", texts_file, "--out", remote, "--engine", "ray", "--workers", "2",
                 "--shard-rows", "32", "--batch-size", "8"]) == 0
    manifest = shards.read_manifest(remote)
    assert manifest["labelled"] == 2 and manifest["shards"] == shards.read_manifest(local)["shards"]

    # a bad row a worker finds (Parquet is planned from its footer) is the same one-line error on the driver
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["fine", "good", " "]}), tmp_path / "bad.parquet")
    with pytest.raises(shards.TinyDistillError, match=r"bad.parquet:3: empty or missing text"):
        shards.label_to_shards(teacher_dir, str(tmp_path / "bad.parquet"), str(tmp_path / "o"), progress=False,
                               engine=ray_engine(workers=1))


@pytest.mark.scale
def test_ray_augment_pool_equals_local(local_ray, tmp_path):
    from tinydistill.pools import read_pool, write_pool
    from tinydistill.scale import ray_rounds

    sentences = toy_texts(30, seed=1)[0]
    neighbours = {w: [w + "s", w + "y", "not " + w] for w in ["good", "bad", "film", "plot", "movie", "the"]}
    local = write_pool(sentences, tmp_path / "local", 150, n=4, shard_size=40, neighbours=neighbours,
                       progress=False)
    remote = write_pool(sentences, tmp_path / "ray", 150, n=4, shard_size=40, neighbours=neighbours, progress=False,
                        engine=lambda maker, count, n, seed: ray_rounds(maker, count, n, seed, workers=2, chunk=7))
    assert read_pool(remote) == read_pool(local) and len(read_pool(local)) == 150
    # the pool stopped reading half way through a round; Ray Data's prefetcher of that read, stopped only when its
    # iterator is collected, has let go of its blocks (left for `ray.shutdown()` at the driver's exit, it made Ray
    # end the process with status 1 after the work succeeded)
    assert not [thread for thread in threading.enumerate() if thread.name == "Prefetcher"]
