"""Hub repo ids: loading from a pre-populated Hub cache with HF_HUB_OFFLINE=1, and pushing up to the call.

Nothing here reaches a hub: the upload itself (HfApi.create_repo/upload_folder) is replaced by a recorder, so
what is tested is everything that leads up to it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import toy_texts

from tinydistill import runtime
from tinydistill.cli import main
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.students import CBoWConfig, Student

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    texts, labels = toy_texts(40)
    folder = tmp_path_factory.mktemp("student") / "cbow"
    Student("cbow", config=CBoWConfig(vocab_size=50, embed_dim=8, hidden_dim=8),
            train=TrainConfig(epochs=2, min_steps=5)).fit(texts, np.array(["neg", "pos"])[labels], ["neg", "pos"],
                                                          progress=False).save_pretrained(folder)
    return folder


@pytest.fixture()
def hub_cache(student_dir, tmp_path, monkeypatch):
    """A Hub cache holding `org/tiny-cbow` at one commit, laid out as huggingface_hub writes it."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny-cbow"
    shutil.copytree(student_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return cache


def test_load_by_repo_id_from_the_offline_cache(hub_cache, student_dir, capsys):
    texts = ["good fun film", "dull and awful"]
    local = runtime.load(student_dir)
    model = runtime.load("org/tiny-cbow")
    assert model.classes_.tolist() == ["neg", "pos"] and model.predict(texts).tolist() == local.predict(texts).tolist()
    student = Student.from_pretrained("org/tiny-cbow")
    assert student.provenance["params"] == student.n_parameters()["total"]
    np.testing.assert_allclose(student.predict_proba(texts), local.predict_proba(texts), atol=1e-6)
    (hub_cache.parent / "in.txt").write_text("\n".join(texts) + "\n")
    assert main(["-q", "predict", "org/tiny-cbow", "in.txt"]) == 0
    assert [json.loads(x)["label"] for x in capsys.readouterr().out.splitlines()] == local.predict(texts).tolist()


def test_serve_takes_a_repo_id(hub_cache, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app))
    assert main(["-q", "serve", "org/tiny-cbow"]) == 0
    from fastapi.testclient import TestClient

    assert TestClient(seen["app"]).post("/predict", json={"text": "good fun"}).json()["label"] in ("neg", "pos")


def test_a_local_folder_wins_over_a_repo_id(hub_cache, student_dir):
    meta = json.loads((student_dir / "config.json").read_text())
    shutil.copytree(student_dir, hub_cache.parent / "org" / "tiny-cbow")
    meta["labels"] = ["bad", "good"]
    (hub_cache.parent / "org" / "tiny-cbow" / "config.json").write_text(json.dumps(meta))
    assert runtime.load("org/tiny-cbow").classes_.tolist() == ["bad", "good"]


def test_a_missing_repo_id_offline_is_one_line(hub_cache, capsys):
    with pytest.raises(TinyDistillError, match="org/missing: no such folder, and as a Hub repo id it is not in "
                                               "the local Hub cache"):
        runtime.load("org/missing")
    assert main(["predict", "org/missing", "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(TinyDistillError, match="not a model folder"):
        runtime.load("a/b/c")  # not an id: the folder error, as before


class FakeApi:
    """Records what would be sent to the Hub."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
        self.calls.append(("create_repo", repo_id, private, exist_ok, self.token))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type=None, allow_patterns=None, commit_message=None):
        from pathlib import Path

        files = sorted(p.name for p in Path(folder_path).iterdir() if any(
            p.match(pattern) for pattern in allow_patterns))
        self.calls.append(("upload_folder", repo_id, files, commit_message))


@pytest.fixture()
def fake_api(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def test_push_uploads_the_folder_with_its_card(student_dir, fake_api, capsys):
    assert main(["-q", "push", str(student_dir), "org/tiny-cbow", "--private", "--token", "hf_x"]) == 0
    assert json.loads(capsys.readouterr().out)["repo"] == "https://huggingface.co/org/tiny-cbow"
    assert fake_api.calls == [
        ("create_repo", "org/tiny-cbow", True, True, "hf_x"),
        ("upload_folder", "org/tiny-cbow", ["README.md", "config.json", "model.safetensors", "vocab.txt"],
         "tinydistill cbow student")]


def test_student_push_to_hub_saves_then_uploads(student_dir, fake_api):
    student = Student.from_pretrained(student_dir)
    assert student.push_to_hub("org/again") == "https://huggingface.co/org/again"
    assert fake_api.calls[1][2] == ["README.md", "config.json", "model.safetensors", "vocab.txt"]


def test_push_refuses_bad_input(student_dir, tmp_path, fake_api, capsys):
    assert main(["push", str(student_dir), "not-an-id"]) == 2
    assert "not a Hub repo id" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "org/x"]) == 2
    assert "missing config file" in capsys.readouterr().err
    assert fake_api.calls == []
