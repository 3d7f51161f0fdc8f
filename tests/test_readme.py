"""The README's examples run as written: every fenced block under "Quickstart on your own CSV", "Deploy" and
"Config files", on tiny CSVs made here.

Nothing in the commands is rewritten. The teacher is the tiny in-process BERT, named by $TINYDISTILL_TEACHER
(the documented default of `--teacher` and `RunConfig.teacher`); the sizes are small because the CSVs are.
Shell blocks run through a small interpreter that knows what the README uses: `tinydistill ...` (in-process,
through `cli.main`), `< FILE` and `echo TEXT |` as standard input, and `curl` against the app that the block's
`tinydistill serve` built (uvicorn is not started; the request goes through FastAPI's test client).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from conftest import toy_texts

from tinydistill.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
STARS = ("1", "5")  # the label column's values in the README's examples


def blocks(heading: str) -> list[tuple[str, str]]:
    """(language, text) of each fenced block under the level-2 heading `heading`, up to the next one."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start: end if end > 0 else None]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", section, re.S)]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_files(folder: Path) -> None:
    """The files the README's examples name: reviews.csv, reviews_test.csv, unlabelled.csv, new_reviews.*."""
    import pandas as pd

    for name, n, seed in (("reviews.csv", 320, 0), ("reviews_test.csv", 60, 1)):
        texts, labels = toy_texts(n, seed)
        write_csv(folder / name, ["review", "stars"], [[t, STARS[y]] for t, y in zip(texts, labels)])
    write_csv(folder / "unlabelled.csv", ["review"], [[t] for t in toy_texts(100, 2)[0]])
    new = pd.DataFrame({"id": range(10), "review": toy_texts(10, 3)[0]})
    new.to_csv(folder / "new_reviews.csv", index=False)
    new.to_parquet(folder / "new_reviews.parquet")


class Shell:
    """Runs a README shell block command by command; records what each printed."""

    def __init__(self, capsys, monkeypatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch
        self.app = None  # what `tinydistill serve` would serve
        self.port: str | None = None
        self.responses: list = []

    def run(self, block: str) -> list[str]:
        outputs = []
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words:
                outputs.append(self.one(words, command))
        return outputs

    def one(self, words: list[str], command: str) -> str:
        stdin = None
        if "|" in words:
            pipe = words.index("|")
            assert words[0] == "echo", f"the test knows `echo TEXT |` only: {command}"
            stdin, words = " ".join(words[1:pipe]) + "\n", words[pipe + 1:]
        if "<" in words:
            at = words.index("<")
            stdin, words = Path(words[at + 1]).read_text(encoding="utf-8"), words[:at] + words[at + 2:]
        if words[0] == "curl":
            return self.curl(words)
        assert words[0] == "tinydistill", f"the test runs `tinydistill` and `curl` commands only: {command}"
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
        if words[1] == "serve":
            import uvicorn

            self.port = words[words.index("--port") + 1] if "--port" in words else "8000"
            self.monkeypatch.setattr(uvicorn, "run", lambda app, **kw: setattr(self, "app", app))
        code = main(words[1:])
        out, err = self.capsys.readouterr()
        assert code == 0, f"{command}\n{err}"
        return out

    def curl(self, words: list[str]) -> str:
        from fastapi.testclient import TestClient

        assert self.app is not None, "curl before `tinydistill serve`"
        url = next(w for w in words[1:] if w.startswith(("localhost:", "http://")))
        host, _, path = url.removeprefix("http://").partition("/")
        assert host.endswith(f":{self.port}"), f"{url}: not the port `serve` was given"
        headers = dict(h.split(": ", 1) for i, h in enumerate(words) if i and words[i - 1] == "-H")
        body = words[words.index("-d") + 1] if "-d" in words else None
        client = TestClient(self.app)
        response = client.post(f"/{path}", content=body, headers=headers) if body is not None else \
            client.get(f"/{path}")
        assert response.status_code == 200, response.text
        self.responses.append(response.json())
        return response.text


def shape(value):
    """A JSON value with its strings and numbers blurred: what the README's sample responses promise."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__.replace("int", "float")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_bert):
    """The README's working folder with its input files, and the settings the tests run under."""
    folder = tmp_path_factory.mktemp("readme")
    make_files(folder)
    return folder


@pytest.fixture()
def shell(folder, tiny_bert, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TINYDISTILL_TEACHER", tiny_bert)  # the documented default of --teacher
    monkeypatch.setenv("TINYDISTILL_CACHE", str(folder / "cache"))
    return Shell(capsys, monkeypatch)


@pytest.fixture()
def quickstart(shell):
    """The quickstart's shell block, run once for the tests that need its run folder."""
    if not (Path("runs/reviews-300-s0/results.json")).exists():
        shell.run(next(text for lang, text in blocks("Quickstart on your own CSV") if lang == "bash"))
    return shell


def run_python(code: str) -> dict:
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own example
    return scope


@pytest.mark.integration
def test_readme_quickstart_shell(quickstart):
    run = Path("runs/reviews-300-s0")
    results = json.loads((run / "results.json").read_text())
    assert [r["model"].split(" ")[0] for r in results["rows"]] == [
        "teacher", "cbow", "cbow-nods", "bilstm", "bilstm-nods"]
    # 320 + unlabelled.csv's 100; the 20 labels beyond --labeled 300 fit the students' temperature
    assert results["sizes"] == {"labeled": 300, "transfer": 420, "test": 60, "calibration": 20}
    assert "| teacher | `" in (run / "students" / "cbow" / "README.md").read_text()
    with open("labelled.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and {r["label"] for r in rows} <= set(STARS) and rows[3]["id"] == "3"


@pytest.mark.integration
def test_readme_quickstart_python(quickstart):
    code = next(text for lang, text in blocks("Quickstart on your own CSV") if lang == "python")
    scope = run_python(code)
    assert scope["results"]["sizes"]["labeled"] == 300 and list(scope["student"].classes_) == list(STARS)


@pytest.mark.integration
def test_readme_deploy_examples(quickstart):
    found = blocks("Deploy")
    langs = [lang for lang, _ in found]
    assert langs == ["python", "bash", "bash", "bash", "json"]
    scope = run_python(found[0][1])
    assert scope["model"].predict(["good fun"])[0] in STARS
    outputs = quickstart.run(found[1][1])
    assert json.loads(outputs[0])["format"] == "int8"
    import pandas as pd

    labelled = pd.read_parquet("labelled.parquet")
    assert list(labelled.columns) == ["label", "prob_1", "prob_5", "unknown_rate", "reason", "id", "review"]
    assert len(labelled) == 10
    assert json.loads(outputs[2])["label"] in STARS  # the echo line
    quickstart.run(found[2][1])  # serve
    quickstart.run(found[3][1])  # curl
    promised = [json.loads(line) for line in found[4][1].splitlines()]
    assert [shape(r) for r in quickstart.responses] == [shape(r) for r in promised]


@pytest.mark.integration
def test_readme_config_example(quickstart):
    found = blocks("Config files")
    assert [lang for lang, _ in found] == ["toml", "bash"]
    name = re.match(r"# (\S+):", found[0][1]).group(1)
    Path(name).write_text(found[0][1])
    outputs = quickstart.run(found[1][1])
    assert "| bilstm |" in outputs[0] and "| bilstm |" not in outputs[1]  # the command line's --students won
    assert json.loads(Path("runs/reviews-300-s0/config.resolved.json").read_text())["students"] == ["cbow"]
