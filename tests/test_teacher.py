"""The teacher on a tiny random BERT built in-process: training, save/load, cached logits, recipes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import killed_at_step, toy_texts

from tinydistill.errors import TinyDistillError
from tinydistill.finetune import RECIPES, get_recipe, train_teacher
from tinydistill.logitcache import LogitCache
from tinydistill.teacher import Teacher

QUICK = get_recipe("strong", epochs=8, min_steps=0, batch_size=8, max_length=16, lr=1e-3, head_lr=1e-2,
                   threads=1)


@pytest.fixture(scope="module")
def teacher(tiny_bert):
    texts, labels = toy_texts(48)
    return train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False)


def test_teacher_learns_and_reports(teacher):
    test, gold = toy_texts(40, seed=1)
    assert (teacher.predict(test, progress=False) == np.array(["neg", "pos"])[gold]).mean() >= 0.8
    report = teacher.info["training"]
    assert report["steps"] == 8 * 6 and report["labels_trained"] == 48 and report["seconds"] >= 0


def test_training_is_deterministic_for_a_seed(tiny_bert, teacher):
    texts, labels = toy_texts(48)
    again = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False)
    assert again.fingerprint == teacher.fingerprint


def test_early_stopping_holds_out_labels(tiny_bert):
    texts, labels = toy_texts(40)
    recipe = get_recipe("strong", epochs=3, min_steps=0, batch_size=8, max_length=16, val_fraction=0.25,
                        threads=1)
    t = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False)
    report = t.info["training"]
    assert report["labels_held_out"] == 10 and report["labels_trained"] == 30
    assert 0 <= report["held_out_accuracy"] <= 1


def test_save_load_round_trip(teacher, tmp_path):
    test, _ = toy_texts(10, seed=2)
    teacher.save_pretrained(tmp_path / "t")
    loaded = Teacher.from_pretrained(tmp_path / "t")
    assert loaded.classes_.tolist() == ["neg", "pos"] and loaded.fingerprint == teacher.fingerprint
    np.testing.assert_allclose(loaded.logits(test, progress=False), teacher.logits(test, progress=False), atol=1e-5)
    assert not list(tmp_path.glob("t/**/*.bin")) and not list(tmp_path.glob("t/**/*.pkl"))  # no pickles


def test_logit_cache_computes_only_what_is_missing(teacher, tmp_path, monkeypatch):
    texts, _ = toy_texts(30, seed=3)
    cache = LogitCache(tmp_path / "cache.sqlite")
    first = teacher.logits(texts[:20], cache=cache, progress=False)
    seen: list[int] = []
    original = teacher._compute
    monkeypatch.setattr(teacher, "_compute",
                        lambda t, b, progress, bar=None: seen.append(len(t)) or original(t, b, progress, bar))
    both = teacher.logits(texts, cache=LogitCache(tmp_path / "cache.sqlite"), progress=False)
    assert seen == [10]  # only the 10 new texts went through the model
    np.testing.assert_allclose(both[:20], first, atol=1e-6)
    np.testing.assert_allclose(both, teacher.logits(texts, progress=False), atol=1e-5)


def test_labelling_progress_moves_batch_by_batch(teacher, tmp_path, monkeypatch):
    import tinydistill.teacher as teacher_mod

    steps: list[int] = []

    class Recording:  # stands in for tqdm: records each advance of the one bar `logits` shows
        def __init__(self, *args, **kwargs):
            self.disable = kwargs.get("disable", False)

        def update(self, n):
            steps.append(n)

        def close(self):
            pass

    monkeypatch.setattr(teacher_mod, "tqdm", Recording)
    texts, _ = toy_texts(30, seed=6)
    teacher.logits(texts, batch_size=8, cache=LogitCache(tmp_path / "cache.sqlite"), progress=True)
    assert steps == [8, 8, 8, 6]  # per batch of 8, not once for the whole cache chunk


def test_recipes_and_bad_names(tiny_bert):
    assert (RECIPES["paper"].epochs, RECIPES["paper"].lr, RECIPES["paper"].batch_size) == (3, 5e-5, 16)
    with pytest.raises(TinyDistillError, match="unknown recipe"):
        get_recipe("magic")
    with pytest.raises(TinyDistillError, match="max length 0: expected at least 2 tokens"):
        get_recipe("strong", max_length=0)
    assert get_recipe("strong", max_length=256).max_length == 256
    with pytest.raises(TinyDistillError, match="could not load"):
        train_teacher("/nonexistent/teacher", ["a", "b"], [0, 1], ["x", "y"], QUICK, progress=False)


def test_ensemble_averages_members_trained_from_consecutive_seeds(tiny_bert, teacher, tmp_path):
    texts, labels = toy_texts(48)
    recipe = replace(QUICK, members=2)
    ensemble = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False)
    single = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], replace(QUICK, seed=1), progress=False)
    test, _ = toy_texts(12, seed=4)
    mean = (teacher.logits(test, progress=False) + single.logits(test, progress=False)) / 2  # seeds 0 and 1
    np.testing.assert_allclose(ensemble.logits(test, progress=False), mean, atol=1e-5)
    assert ensemble.info["training"]["steps"] == 2 * teacher.info["training"]["steps"]
    assert ensemble.n_parameters() == 2 * teacher.n_parameters()
    assert "members" not in QUICK.to_dict() and recipe.to_dict()["members"] == 2  # single teachers keep old keys
    ensemble.save_pretrained(tmp_path / "e")
    loaded = Teacher.from_pretrained(tmp_path / "e")
    assert loaded.fingerprint == ensemble.fingerprint and sorted(p.name for p in (tmp_path / "e").iterdir()) == [
        "member-0", "member-1", "teacher.json"]
    np.testing.assert_allclose(loaded.logits(test, progress=False), mean, atol=1e-5)


def test_self_training_adds_the_surest_pool_texts_and_keeps_the_step_count(tiny_bert, teacher):
    texts, labels = toy_texts(48)
    pool, _ = toy_texts(60, seed=5)
    t = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], replace(QUICK, self_train=20), progress=False,
                      pool=pool + texts[:5])  # labelled texts in the pool are not picked again
    report = t.info["training"]
    assert report["self_train"]["pool_scored"] == len(set(pool) - set(texts))
    assert report["self_train"]["pseudo_labelled"] == 20 and report["labels_trained"] == 48 + 20
    assert report["steps"] == report["self_train"]["first"]["steps"] == teacher.info["training"]["steps"]
    assert t.info["recipe"]["self_train"] == 20 and t.fingerprint != teacher.fingerprint
    test, gold = toy_texts(40, seed=1)
    assert (t.predict(test, progress=False) == np.array(["neg", "pos"])[gold]).mean() >= 0.8


def test_contrastive_stage_pulls_same_label_texts_together_then_fits_the_head(tiny_bert):
    import torch

    from tinydistill.finetune import _pooled

    texts, labels = toy_texts(48)
    recipe = get_recipe("contrastive", contrastive=30, lr=1e-3, max_length=16, threads=1)
    assert "contrastive" not in QUICK.to_dict() and recipe.to_dict()["contrastive"] == 30  # old keys hold

    def gap(teacher) -> float:  # mean cosine of same-label pairs minus that of other-label pairs
        unit = torch.nn.functional.normalize(_pooled(teacher.model, teacher, texts), dim=1)
        cos, same = unit @ unit.T, torch.tensor(labels)[:, None] == torch.tensor(labels)[None, :]
        off = ~torch.eye(len(texts), dtype=torch.bool)
        return float(cos[same & off].mean() - cos[~same].mean())

    untrained = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], replace(recipe, contrastive=1, lr=1e-9),
                              progress=False)
    t = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False)
    assert gap(t) > gap(untrained) + 0.3
    assert t.info["training"]["steps"] == 30 and t.info["recipe"]["contrastive"] == 30
    test, gold = toy_texts(40, seed=1)
    assert (t.predict(test, progress=False) == np.array(["neg", "pos"])[gold]).mean() >= 0.8
    again = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False)
    assert again.fingerprint == t.fingerprint


@pytest.mark.parametrize("held_out", [0.0, 0.25])
def test_killed_fine_tuning_resumes_from_its_checkpoint_to_the_same_teacher(tiny_bert, tmp_path, monkeypatch,
                                                                           caplog, held_out):
    import json

    texts, labels = toy_texts(48)
    recipe = replace(QUICK, val_fraction=held_out)
    whole = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False)
    folder, steps = tmp_path / "checkpoint", whole.info["training"]["steps"]
    with killed_at_step(monkeypatch, 20), pytest.raises(KeyboardInterrupt):  # step 19's state is on disk
        train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False, checkpoint=folder,
                      checkpoint_every=0)
    assert json.loads((folder / "state.json").read_text())["step"] == 19 < steps
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pkl"))  # nothing to unpickle
    resumed = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], recipe, progress=False, checkpoint=folder)
    assert resumed.info["training"]["resumed_at_step"] == 19 and resumed.info["training"]["steps"] == steps
    assert resumed.fingerprint == whole.fingerprint  # the same weights, bit for bit, as the uninterrupted run
    assert resumed.info["training"]["held_out_accuracy"] == whole.info["training"]["held_out_accuracy"]

    other = train_teacher(tiny_bert, texts, [1 - y for y in labels], ["neg", "pos"], recipe, progress=False,
                          checkpoint=folder)  # other labels: the checkpoint is not theirs
    assert "resumed_at_step" not in other.info["training"] and "another training's" in caplog.text


def test_corrupt_checkpoint_is_detected_and_training_starts_afresh(tiny_bert, teacher, tmp_path, monkeypatch,
                                                                  caplog):
    texts, labels = toy_texts(48)
    with killed_at_step(monkeypatch, 10), pytest.raises(KeyboardInterrupt):
        train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False, checkpoint=tmp_path / "c",
                      checkpoint_every=0)
    weights = tmp_path / "c" / "state.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    again = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False, checkpoint=tmp_path / "c")
    assert "does not match its sha256" in caplog.text and "resumed_at_step" not in again.info["training"]
    assert again.fingerprint == teacher.fingerprint  # trained from the base, as without a checkpoint

    import json  # state.json is outside the sha256: a group too few is refused before anything is restored

    with killed_at_step(monkeypatch, 10), pytest.raises(KeyboardInterrupt):
        train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False, checkpoint=tmp_path / "c",
                      checkpoint_every=0)
    meta = json.loads((tmp_path / "c" / "state.json").read_text())
    (tmp_path / "c" / "state.json").write_text(json.dumps({**meta, "param_groups": meta["param_groups"][:1]}))
    third = train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False, checkpoint=tmp_path / "c")
    assert "parameter groups do not fit" in caplog.text and third.fingerprint == teacher.fingerprint
