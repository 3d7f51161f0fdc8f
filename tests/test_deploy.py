"""The deployment commands: export of a run folder, `predict` over every input format, and the HTTP server
(every endpoint and every 4xx), all on tiny students built in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill import runtime
from tinydistill.cli import main
from tinydistill.deploy import predict_file
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.export import export
from tinydistill.students import BiLSTMConfig, CBoWConfig, Student

LABELS = ["neg", "pos"]
TEXTS = ["good film", "", "awful, dull plot", "very fun and lovely"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder with two students, as `tinydistill run` leaves it."""
    run = tmp_path_factory.mktemp("run")
    texts, labels = toy_texts(40)
    logits = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    for kind, config in [("cbow", CBoWConfig(vocab_size=50, embed_dim=8, hidden_dim=8)),
                         ("bilstm", BiLSTMConfig(vocab_size=50, embed_dim=8, hidden_dim=6))]:
        Student(kind, config=config, train=TrainConfig(epochs=2, min_steps=5)).fit(
            texts, logits, LABELS, progress=False).save_pretrained(run / "students" / kind)
    return run


@pytest.fixture(scope="module")
def model_dir(run_folder):
    return run_folder / "students" / "cbow"


def expected(model_dir, texts):
    model = runtime.load(model_dir)
    return model.predict(texts).tolist(), model.predict_proba(texts)


# ------------------------------------------------------------------------------------------------- export


def test_export_run_folder(run_folder, tmp_path):
    written = export(run_folder, tmp_path / "all", "int8")
    assert sorted(p.name for p in written) == ["bilstm", "cbow"]
    assert all(runtime.load(p).classes_.tolist() == LABELS for p in written)
    card = (written[0] / "README.md").read_text()  # the source's card and provenance travel with the export
    assert "this is a `int8` export" in card and "provenance" in json.loads((written[0] / "config.json").read_text())
    only = export(run_folder, tmp_path / "one", "numpy", student="bilstm")
    assert [p.name for p in only] == ["bilstm"]
    with pytest.raises(TinyDistillError, match="no student 'cnn'"):
        export(run_folder, tmp_path / "none", "numpy", student="cnn")
    with pytest.raises(TinyDistillError, match="replace its own source"):
        export(run_folder / "students" / "cbow", run_folder / "students" / "cbow", "numpy")


def test_export_command_default_folder(run_folder, capsys):
    assert main(["-q", "export", str(run_folder), "--format", "numpy"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["exported"]) == [str(run_folder / "export-numpy" / n) for n in ("bilstm", "cbow")]
    assert main(["-q", "export", str(run_folder / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ predict


def stdin(monkeypatch, data: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode("utf-8"))))


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("data", [
    "good film\n\nawful, dull plot\nvery fun and lovely\n",  # plain lines; the empty line is an empty text
    "\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)) + "\n",  # JSON Lines objects
])
def test_predict_from_stdin(model_dir, monkeypatch, capsys, data):
    stdin(monkeypatch, data)
    assert predict_file(model_dir) == 4
    rows = jsonl(capsys.readouterr().out)
    labels, proba = expected(model_dir, TEXTS)
    assert [r["label"] for r in rows] == labels
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in rows], proba, atol=1e-6)
    assert list(rows[0]["probabilities"]) == LABELS
    assert [r["unknown_rate"] for r in rows] == pytest.approx(runtime.load(model_dir).unknown_rate(TEXTS), abs=1e-4)
    assert all(r["reason"] is None for r in rows)


def test_predict_abstains(model_dir, monkeypatch, capsys, tmp_path):
    texts = ["good film", "zzz qqq xxx", "", "awful, dull plot"]
    stdin(monkeypatch, "\n".join(texts) + "\n")
    predict_file(model_dir, max_unknown=0.5, min_confidence=0.0)
    rows = jsonl(capsys.readouterr().out)
    assert [r["label"] is None for r in rows] == [rate > 0.5 for rate in runtime.load(model_dir).unknown_rate(texts)]
    assert rows[1]["label"] is None and rows[1]["unknown_rate"] == 1.0 and "unknown" in rows[1]["reason"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.csv"  # every text under a 0.99 top probability: an empty label and the reason
    assert main(["-q", "predict", str(model_dir), str(tmp_path / "in.txt"), "-o", str(out),
                 "--min-confidence", "0.99"]) == 0
    lines = out.read_text().splitlines()[1:]
    assert all(line.startswith(",") and "top probability" in line for line in lines)
    assert main(["-q", "predict", str(model_dir), str(tmp_path / "in.txt"), "--max-unknown", "2"]) == 2
    assert "argument --max-unknown: 2 is not" in capsys.readouterr().err


def test_predict_csv_stdin_to_csv(model_dir, monkeypatch, capsys):
    stdin(monkeypatch, 'id,text\n1,"good film"\n2,""\n3,"awful, dull plot"\n4,"very fun\nand lovely"\n')
    predict_file(model_dir, input_format="csv", output_format="csv")
    import csv

    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    # the input's columns follow, to join back on
    assert rows[0] == ["label", "prob_neg", "prob_pos", "unknown_rate", "reason", "id", "text"]
    assert [r[5] for r in rows[1:]] == ["1", "2", "3", "4"] and rows[4][6] == "very fun\nand lovely"
    assert [r[0] for r in rows[1:]] == expected(
        model_dir, ["good film", "", "awful, dull plot", "very fun\nand lovely"])[0]


def test_predict_files_by_extension(model_dir, tmp_path, capsys):
    (tmp_path / "in.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t0\n" for t in TEXTS))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TEXTS))  # JSON strings
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    labels = expected(model_dir, TEXTS)[0]
    for name in ("in.tsv", "in.jsonl", "in.txt"):
        out = tmp_path / f"{name}.csv"
        assert main(["-q", "predict", str(model_dir), str(tmp_path / name), "-o", str(out)]) == 0
        assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == labels, name
        assert not (tmp_path / f"{name}.csv.tmp").exists()
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["texts"] == 4


@pytest.mark.parametrize("out_name", ["out.csv", "out.tsv", "out.jsonl", "out.parquet"])
def test_predict_keeps_the_input_columns_in_every_format(model_dir, tmp_path, out_name):
    """Parquet, CSV, TSV and JSON Lines in; the format out from -o's extension; every input column kept."""
    import pandas as pd

    frame = pd.DataFrame({"id": [10, 11, 12, 13], "review": TEXTS, "label": ["x", "y", "x", "y"]})
    frame.to_parquet(tmp_path / "in.parquet")
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    labels, proba = expected(model_dir, TEXTS)
    for source in ("in.parquet", "in.csv", "in.jsonl"):
        out = tmp_path / f"{source}-{out_name}"
        assert main(["-q", "predict", str(model_dir), str(tmp_path / source), "--text-column", "review",
                     "-o", str(out)]) == 0
        got = (pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_json(out, lines=True)
               if out.suffix == ".jsonl" else pd.read_csv(out, sep="\t" if out.suffix == ".tsv" else ",",
                                                          keep_default_na=False))
        assert got["label"].tolist() == labels, source
        assert got["id"].astype(int).tolist() == [10, 11, 12, 13] and got["review"].tolist() == TEXTS
        assert got["input_label"].tolist() == ["x", "y", "x", "y"]  # the input's "label" is kept under a new name
        probs = got[["prob_neg", "prob_pos"]].to_numpy() if out.suffix != ".jsonl" else \
            np.array([[p["neg"], p["pos"]] for p in got["probabilities"]])
        np.testing.assert_allclose(probs, proba, atol=1e-5)


def test_predict_parquet_errors(model_dir, tmp_path, capsys):
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert main(["predict", str(model_dir), str(tmp_path / "bad.parquet")]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err
    (tmp_path / "in.txt").write_text("good\n")
    assert main(["predict", str(model_dir), str(tmp_path / "in.txt"), "--output-format", "parquet"]) == 2
    assert "Parquet output needs a file" in capsys.readouterr().err


def test_predict_streams_in_batches(model_dir, tmp_path):
    (tmp_path / "many.txt").write_text("good film\n" * 25)
    out = tmp_path / "many.jsonl"
    assert predict_file(model_dir, str(tmp_path / "many.txt"), str(out), batch_size=4, progress=False) == 25
    assert len(out.read_text().splitlines()) == 25


@pytest.mark.parametrize("data, fmt, message", [
    ('{"text": 5}\n', "jsonl", "<stdin>:1: expected a JSON string"),
    ('{"text": "ok"}\n{broken\n', "jsonl", "<stdin>:2: not valid JSON"),
    ("[1, 2]\n", "jsonl", "expected a JSON string"),
    ("review\nnice\n", "csv", "no column 'text'"),
])
def test_predict_bad_input(model_dir, monkeypatch, capsys, data, fmt, message):
    stdin(monkeypatch, data)
    with pytest.raises(TinyDistillError, match=message.replace("[", r"\[")):
        predict_file(model_dir, input_format=fmt)


def test_predict_errors_through_the_cli(run_folder, tmp_path, capsys):
    assert main(["predict", str(run_folder), str(tmp_path / "x.txt")]) == 2
    assert "a run folder; pick a student" in capsys.readouterr().err
    assert main(["predict", str(run_folder / "students" / "cbow"), str(tmp_path / "x.txt")]) == 2
    assert "input file not found" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["-q", "predict", str(run_folder / "students" / "cbow"), str(tmp_path / "latin1.txt")]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_predict_command_without_torch(model_dir):
    """`tinydistill predict` runs where torch cannot be imported."""
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers"):
                    raise ImportError(name + " is blocked in this test")
        sys.meta_path.insert(0, Block())
        from tinydistill.cli import main
        code = main(["-q", "predict", {str(model_dir)!r}])
        assert "torch" not in sys.modules
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], input="good film\nawful\n", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["label"] for line in done.stdout.splitlines()] == expected(
        model_dir, ["good film", "awful"])[0]


# ------------------------------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def client(model_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tinydistill.serve import Limits, create_app

    return TestClient(create_app(runtime.load(model_dir), Limits(max_texts=5, max_bytes=50_000, max_chars=1000)))


def test_predict_one_and_many(client, model_dir):
    labels, proba = expected(model_dir, TEXTS)
    one = client.post("/predict", json={"text": TEXTS[0]})
    assert one.status_code == 200
    assert one.json()["label"] == labels[0]
    assert one.json()["probabilities"] == pytest.approx(dict(zip(LABELS, proba[0].tolist(), strict=True)), abs=1e-6)
    many = client.post("/predict", json={"texts": TEXTS})
    assert [p["label"] for p in many.json()["predictions"]] == labels
    assert client.post("/predict", json={"texts": []}).json() == {"predictions": []}
    assert one.json()["unknown_rate"] == 0.0 and one.json()["reason"] is None


def test_serve_abstains(model_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tinydistill.serve import create_app

    app = TestClient(create_app(runtime.load(model_dir), max_unknown=0.4))
    body = app.post("/predict", json={"texts": ["good film", "good qqq zzz"]}).json()["predictions"]
    assert body[0]["label"] is not None and body[1]["label"] is None
    assert body[1]["unknown_rate"] == pytest.approx(2 / 3) and "67% of its words are unknown" in body[1]["reason"]
    assert app.get("/metadata").json()["abstain"] == {"min_confidence": None, "max_unknown": 0.4}


def test_health_metadata_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["labels"] == LABELS and meta["model_type"] == "cbow" and meta["limits"]["max_texts"] == 5
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/metadata"} <= set(spec["paths"])
    assert "PredictRequest" in json.dumps(spec["paths"]["/predict"]["post"]["requestBody"])


def test_long_texts_are_cut_not_refused(client, model_dir):
    long = "good " * 8_000 + "awful " * 1000  # 46,000 characters, cut to max_chars=1000
    response = client.post("/predict", json={"text": long})
    assert response.status_code == 200
    assert response.json()["label"] == expected(model_dir, [long[:1000]])[0][0]


def test_a_megabyte_text_with_the_default_limits(model_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tinydistill.serve import create_app

    app = TestClient(create_app(runtime.load(model_dir)))
    response = app.post("/predict", json={"texts": ["fine " * 200_000, ""]})  # 1 MB and an empty text
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2


@pytest.mark.parametrize("kwargs, status, message", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": {}}, 422, "exactly one of"),
    ({"json": {"txt": "typo"}}, 422, "txt"),
    ({"json": {"text": 5}}, 422, "text: Input should be a valid string"),
    ({"json": {"text": None}}, 422, "exactly one of"),
    ({"json": {"texts": ["ok", 7]}}, 422, "texts.1"),
    ({"json": {"texts": "not a list"}}, 422, "texts"),
    ({"json": {"text": "a", "texts": ["b"]}}, 422, "exactly one of"),
    ({"json": ["a", "b"]}, 422, "expected a JSON object"),
    ({"content": b"", "headers": {"content-type": "application/json"}}, 422, "expected a JSON object"),
    ({"json": {"texts": ["a"] * 6}}, 413, "too many texts: 6 > 5"),
    ({"json": {"text": "x" * 60_000}}, 413, "over the limit of 50000 bytes"),
])
def test_client_errors(client, kwargs, status, message):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_streamed_body_over_the_limit(client):
    def chunks():  # no Content-Length: the limit is checked while reading
        yield b'{"text": "'
        for _ in range(60):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over the limit" in response.json()["error"]


def test_wrong_method_and_path(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nowhere").json() == {"error": "Not Found"}


def test_serve_command_wiring(model_dir, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    assert main(["-q", "serve", str(model_dir), "--port", "8123", "--max-texts", "2", "--min-confidence", "1"]) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    from fastapi.testclient import TestClient

    response = TestClient(calls["app"]).post("/predict", json={"texts": ["a", "b", "c"]})
    assert response.status_code == 413
    assert TestClient(calls["app"]).post("/predict", json={"text": "good"}).json()["label"] is None
