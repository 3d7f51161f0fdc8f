"""`tinydistill reproduce` on a tiny fake data folder with the tiny in-process teacher: tables, plots, resume."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest
from conftest import toy_texts

from tinydistill import data, evaluate, pipeline, report
from tinydistill.cli import build_parser, main
from tinydistill.cli import paper as paper_cli
from tinydistill.config import RunConfig
from tinydistill.paper import reproduce, tables
from tinydistill.paper.setup import Setup
from tinydistill.task import load_task

SIZES = (40, 120)  # the fake "sst2" paper sizes: 40 labels (Table 2, low resource) and 120 (high resource)


def write_split(path, n, seed):
    texts, labels = toy_texts(n, seed)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))


@pytest.fixture(scope="module")
def setup(tiny_bert, tmp_path_factory):
    """A shared/data-like folder with a tiny "sst2" (40 labels, 200 train + a 60-text pool, 60 test)."""
    root = tmp_path_factory.mktemp("reproduce")
    (root / "data" / "sst2").mkdir(parents=True)
    write_split(root / "data" / "sst2" / "train.tsv.gz", 200, 0)
    write_split(root / "data" / "sst2" / "test.tsv.gz", 60, 1)
    (root / "data" / "sst2" / "labels.json").write_text(json.dumps({"labels": ["negative", "positive"]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYDISTILL_CACHE", str(root / "cache"))
        mp.setitem(data.PAPER_DATASETS, "sst2", replace(data.PAPER_DATASETS["sst2"], labeled=SIZES[0], transfer=260))
        quick = evaluate.throughput  # timings are not under test: a fraction of a second each

        def throughput(*args, **kwargs):
            return quick(*args, **{**kwargs, "min_seconds": 0.02})

        mp.setattr(report, "throughput", throughput)
        mp.setattr(evaluate, "throughput", throughput)
        base = RunConfig(recipe="paper", teacher_epochs=40, teacher_lr=1e-3, max_length=16, glove=False)
        yield Setup(seeds=(0, 1), teacher=tiny_bert, augment="tang", out=str(root / "out"),
                    data_dir=str(root / "data"), peers=("tfidf-lr",), students=("cbow",), speed_teacher=tiny_bert,
                    base=base, progress=False)


@pytest.fixture(scope="module")
def first(setup):
    return tables.table2(["sst2"], setup), tables.table3(SIZES, setup)


def test_table2_mean_std_paper_column_and_sizes(first, setup):
    result, _ = first
    rows = {r["model"]: r for r in result["summary"]}
    assert set(rows) == {"teacher", "cbow", "cbow-nods", "tfidf-lr", "tfidf-lr-hard"}
    for row in rows.values():
        assert row["runs"] == 2 and len(row["headline"]["values"]) == 2
        assert row["headline"]["std"] >= 0 and 0 <= row["headline"]["mean"] <= 1
        assert row["speedup"]["mean"] > 0 and row["compression"]["mean"] > 1
    assert rows["teacher"]["accuracy"]["mean"] >= 0.9 and rows["cbow"]["accuracy"]["mean"] >= 0.7
    run = result["runs"][0]
    assert run["sizes"] == {"labeled": 40, "transfer": 260, "test": 60, "calibration": 26}  # 200 train + 60 pool
    assert 0.5 <= rows["cbow"]["agree_test"]["mean"] <= 1 and "agree_transfer" not in rows["teacher"]
    assert run["reference"]["timed"] == "base encoder, fresh head"
    saved = json.loads(open(result["json"]).read())
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    md = open(result["markdown"]).read()
    assert "| model | SST-2 F1 | acc | paper | agree transfer | agree test |" in md and "| 83.5 |" in md
    assert "| 79.1 |" in md
    assert "| TF-IDF + LR on teacher labels |" in md and "40 / 260 (paper S-train 260) / 60" in md
    assert "seeds: sst2 0, 1" in md and "teacher recipe: paper, 40 epochs" in md and "NOT the 109.5M one" in md


def test_table2_merged_from_calls_of_one_seed_each_equals_one_call(first, setup, tmp_path, capsys):
    whole = json.loads(open(first[0]["json"]).read())
    parts = []
    for i, run in enumerate(whole["runs"]):  # as if each seed had been a call of its own, on another machine
        part = {**whole, "runs": [run], "seconds": 10.0 + i, "teacher_seconds": 100.0 + i}
        parts.append(tmp_path / f"seed{i}.json")
        parts[-1].write_text(json.dumps(part))
    assert main(["-q", "reproduce", "table2", "--merge", *map(str, parts), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "table2.json").read_text())
    assert merged["summary"] == whole["summary"] and merged["merged_from"] == [str(p) for p in parts]
    assert merged["seconds"] == 21.0 and merged["teacher_seconds"] == 201.0
    md = (tmp_path / "merged" / "table2.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table == [line for line in open(first[0]["markdown"]).read().splitlines() if line.startswith("| ")]
    assert f"merged from saved tables ({parts[0]}, sst2: 10 s, teacher fine-tuning 100 s;" in md
    assert "seeds: sst2 0, 1" in md
    capsys.readouterr()

    # the same run twice, another setup, not a table2.json, or one --out would overwrite: one line naming the file
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**whole, "runs": whole["runs"][1:], "setup": {**whole["setup"], "teacher": "x"}}))
    for args, says in (([parts[0], parts[0]], "sst2/40 seed 0 is also in"), ([parts[0], other], "teacher 'x'"),
                       ([tmp_path / "merged" / "table2.md"], "not a readable table2.json"),
                       ([first[1]["json"]], "expected a table2.json"),  # Table 3's JSON
                       ([tmp_path / "no" / "table2.json"], "would write the merged table over")):
        assert main(["-q", "reproduce", "table2", "--merge", *map(str, args), "--out", str(tmp_path / "no")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and str(args[-1]) in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "no").exists()


def test_table3_low_and_high(first):
    _, result = first
    rows = {(r["labeled"], r["model"]): r for r in result["summary"]}
    assert {n for n, _ in rows} == set(SIZES) and len(rows[(120, "cbow-nods")]["headline"]["values"]) == 2
    md = open(result["markdown"]).read()
    assert ("| model | ours, 40 labels | paper, 200 labels | agree transfer | agree test | ours, 120 labels | "
            "paper, 6920 labels | agree transfer | agree test |") in md
    assert "| CBoW-FFN NoDs |" in md and "| 62.8 |" in md and "| 81.2 |" in md
    cbow = next(line for line in md.splitlines() if line.startswith("| CBoW-FFN |")).split(" | ")
    agree = rows[(40, "cbow")]["agree_test"]["mean"]  # the distilled student's agreement with its teacher, measured
    assert 0 < agree <= 1 and cbow[4].startswith(f"{100 * agree:.1f}")


def test_curves_write_png(first, setup):
    pytest.importorskip("matplotlib")
    result = tables.curves(["sst2"], SIZES, setup)  # every run and peer comes from the tables' folders
    for name in result["plots"]:
        png = (reproduce.Path(setup.out) / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    md = open(result["markdown"]).read()
    assert "![sst2 curves](curves_sst2.png)" in md and "![F1 against latency](scatter.png)" in md
    assert "| TF-IDF + LR |" in md


def test_rerun_recomputes_nothing(first, setup, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("recomputed on a rerun")

    import tinydistill.logitcache
    import tinydistill.paper.peers
    import tinydistill.pools

    monkeypatch.setattr(pipeline, "train_teacher", fail)
    monkeypatch.setattr(pipeline.Student, "fit", fail)
    monkeypatch.setattr(tinydistill.paper.peers.Peer, "fit", fail)
    monkeypatch.setattr(tinydistill.pools, "write_pool", fail)
    monkeypatch.setattr(tinydistill.logitcache.LogitCache, "put", fail)  # every teacher logit comes from the cache
    again = tables.table2(["sst2"], setup), tables.table3(SIZES, setup)
    for before, after in zip(first, again):
        assert [r["headline"] for r in before["summary"]] == [r["headline"] for r in after["summary"]]

    # the sub-command prints the table with every size used (its options map onto this test's setup)
    monkeypatch.setattr(paper_cli, "setup_from_args", lambda a: replace(setup, seeds=a.seeds[None]))
    assert main(["-q", "reproduce", "table3", "--sizes", "40,120", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "| CBoW-FFN NoDs |" in out and "120 / 260 (paper S-train 260) / 60" in out and "table3.json" in out


def test_missing_speed_teacher_warns(first, setup, caplog):
    task = load_task(reproduce.run_config("sst2", SIZES[0], 0, setup))
    teacher_dir = reproduce.Path(first[0]["runs"][0]["run"]) / "teacher"
    assert reproduce.time_reference("mpnet-base", task, teacher_dir) is None
    assert "fetch-teacher mpnet-base" in caplog.text


def test_cli_parses_into_setup():
    a = build_parser().parse_args(["reproduce", "table2", "--datasets", "sst2,cola", "--seeds", "0,1",
                                   "--teacher", "mpnet-base,imdb=minilm", "--transfer-scale", "0.05", "--peers", ""])
    s = paper_cli.setup_from_args(a)
    assert a.datasets == ["sst2", "cola"] and s.seeds == (0, 1) and s.transfer_scale == 0.05 and s.peers == ()
    assert s.teacher_for("sst2") == "mpnet-base" and s.teacher_for("imdb") == "minilm"
    a = build_parser().parse_args(["reproduce", "table3", "--seeds", "0,1,2,imdb=0+3", "--transfer-max", "5000",
                                   "--teacher-epochs", "3"])
    s = paper_cli.setup_from_args(a)
    assert s.seeds_for("sst2") == (0, 1, 2) and s.seeds_for("imdb") == (0, 3) and s.base.teacher_epochs == 3
    assert s.transfer_size("cola") == 5000 and s.transfer_size("agnews") == 5000  # the paper: 1M and 20K
    assert replace(s, transfer_scale=0.1, transfer_max=None).transfer_size("agnews") == 2000
    assert build_parser().parse_args(["reproduce", "curves", "--sizes", "50,100"]).sizes == [50, 100]
    s = paper_cli.setup_from_args(build_parser().parse_args(["reproduce", "teachers", "--max-length", "256"]))
    assert s.base.max_length == 256 and s.base.teacher_epochs is None and s.base.recipe == "strong"


def test_teachers_table_compares_recipes_and_resumes(setup, monkeypatch):
    sized = replace(setup, test_size=30)
    result = tables.teachers(["sst2"], sized, recipes=("paper", "strong-early-stop"))
    rows = {r["recipe"]: r for r in result["summary"]}
    assert set(rows) == {"paper", "strong-early-stop"}
    for row in rows.values():
        assert row["runs"] == 2 and len(row["headline"]["values"]) == 2 and row["texts_per_s"]["mean"] > 0
        assert row["seconds"]["mean"] > 0 and row["steps"]["mean"] >= 1
    assert rows["paper"]["held_out"] is None and 0 <= rows["strong-early-stop"]["held_out"]["mean"] <= 1
    assert {r["sizes"]["test"] for r in result["runs"]} == {30}  # one stratified sample of the 60 test texts
    # a folder per recipe and teacher text length: the fixture's teachers read 16 tokens a text, not 128
    assert all(r["run"].endswith(f"-{r['recipe']}-16tok") for r in result["runs"])
    assert len({r["run"] for r in result["runs"]}) == 4
    assert {r["max_length"] for r in result["runs"]} == {16}
    md = open(result["markdown"]).read()
    assert "| SST-2 | 40 | " in md and "| 83.5 |" in md and "40 / 30 (" in md and "| paper, 16 tokens |" in md
    assert {r["score_threads"] for r in result["runs"]} == {1} and "on 1 torch thread(s)." in md

    monkeypatch.setattr(pipeline, "train_teacher", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = tables.teachers(["sst2"], sized, recipes=("paper", "strong-early-stop"))
    assert [r["headline"] for r in again["summary"]] == [r["headline"] for r in result["summary"]]


def test_test_size_is_one_sample_for_every_seed(setup):
    config = replace(reproduce.run_config("sst2", SIZES[0], 0, setup), test_size=20)
    tasks = [load_task(replace(config, seed=seed)) for seed in (0, 1)]
    assert len(tasks[0].test) == 20 and tasks[0].test.texts == tasks[1].test.texts
    assert sorted(set(tasks[0].test.labels)) == [0, 1]


def test_one_seed_prints_no_std():
    one, two = {"f1": reproduce.mean_std([0.5])}, {"f1": reproduce.mean_std([0.5, 0.7])}
    assert tables._pm(one, "f1") == "50.0" and tables._pm(two, "f1") == "60.0 ± 14.1"
