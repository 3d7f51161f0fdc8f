"""Devices and precisions on a CPU-only machine: `--device` resolution, the CPU path left as it was, the GPU
path's token-budget batching (run here on the CPU), int8 labelling and its guard. Nothing here uses CUDA."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import toy_texts

from tinydistill import device as device_mod
from tinydistill.cli import main
from tinydistill.device import cache_tag, int8_full_range, int8_guard, resolve_device, token_budget_batches
from tinydistill.distill import TrainConfig
from tinydistill.errors import TinyDistillError
from tinydistill.finetune import get_recipe, train_teacher
from tinydistill.logitcache import LogitCache

QUICK = get_recipe("strong", epochs=8, min_steps=0, batch_size=8, max_length=16, lr=1e-3, head_lr=1e-2, threads=1)


@pytest.fixture()
def no_gpu(monkeypatch):
    """As on a CPU-only machine, wherever the suite runs; initialising CUDA at all fails the test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lambda: pytest.fail("CUDA was initialised"))


@pytest.fixture(scope="module")
def teacher(tiny_bert):
    texts, labels = toy_texts(48)
    return train_teacher(tiny_bert, texts, labels, ["neg", "pos"], QUICK, progress=False)


def test_device_specs_resolve_or_fail_in_one_line(no_gpu):
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    for spec, message in (("cuda", "torch sees no CUDA GPU"), ("cuda:1", "torch sees no CUDA GPU"),
                          ("gpu", "expected auto, cpu, cuda or cuda:N"), ("cuda:x", "expected auto")):
        with pytest.raises(TinyDistillError, match=message) as error:
            resolve_device(spec)
        assert "\n" not in str(error.value)
    assert device_mod.precision_name(torch.device("cpu")) == "fp32"
    assert device_mod.grad_scaler(torch.device("cpu")) is None


@pytest.mark.parametrize("command", [
    ["run", "--data", "missing.csv"], ["train-teacher", "--data", "missing.csv", "--out", "t"],
    ["label", "no-teacher", "--out", "x.jsonl"], ["reproduce", "table2", "--datasets", "sst2"]])
def test_cli_device_cuda_without_a_gpu_is_one_line_and_exit_2(no_gpu, capsys, command):
    code = main([*command, "--device", "cuda"])  # checked before any data, teacher or run is touched
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tinydistill: error: --device cuda: torch sees no CUDA GPU")
    assert err.count("\n") == 1


def test_cpu_logits_and_cache_key_are_those_from_before(teacher, no_gpu):
    """`--device cpu` computes as the code did before devices: char-length sorted batches of 64, fp32, and the
    logit cache key is the bare fingerprint (the key of every cached CPU result)."""
    texts, _ = toy_texts(150, seed=4)
    fingerprint = teacher.fingerprint
    on_cpu = teacher.to("cpu")
    assert on_cpu.logit_key == fingerprint == on_cpu.fingerprint and on_cpu.precision == "fp32"
    got = on_cpu.logits(texts, progress=False)

    expected = np.zeros_like(got)  # the labelling loop as it was
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            rows = order[start: start + 64]
            enc = teacher.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                    max_length=teacher.max_length, return_tensors="pt")
            expected[rows] = teacher.model(enc["input_ids"], enc["attention_mask"]).float().numpy()
    assert np.array_equal(got, expected)  # bit for bit


def test_the_gpu_path_packs_by_tokens_and_matches_the_cpu_path(teacher):
    """`_compute_packed` (what a GPU runs, here on the CPU without autocast) agrees with the fp32 path."""
    texts, _ = toy_texts(150, seed=5)
    texts = texts + ["good " * 40, ""]  # one text cut at max_length, one empty
    packed = teacher._compute_packed(texts, batch_size=4, progress=False)  # a budget of 4 x 16 tokens
    np.testing.assert_allclose(packed, teacher._compute(texts, 64, False), atol=1e-5)
    assert teacher._compute_packed([], 4, False).shape == (0, 2)


def test_token_budget_batches():
    lengths = [5, 30, 12, 12, 1, 64, 7, 0, 30]
    batches = token_budget_batches(lengths, budget=64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))  # each row exactly once
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)  # longest first
    for b in batches:
        longest = max(max(lengths[i] for i in b), 1)
        assert len(b) * longest <= 64
    assert [len(b) for b in batches] == [1, 2, 5, 1]  # 64 | 30 30 | 12 12 7 5 1 (5 x 12 <= 64) | 0
    assert [len(b) for b in token_budget_batches([100, 3], budget=10)] == [1, 1]  # one over budget: alone
    assert token_budget_batches([], 10) == []


def test_int8_teacher_is_keyed_apart_and_close_to_fp32(teacher, tmp_path):
    texts, gold = toy_texts(60, seed=6)
    int8 = teacher.int8()
    assert int8.precision == "int8" and int8.fingerprint == teacher.fingerprint
    assert int8.logit_key == f"{teacher.fingerprint}-{cache_tag('int8')}" != teacher.logit_key
    seven = teacher.int8(full_range=False)  # torch's own 7-bit scheme: the key of before, apart from 8 bits
    assert seven.logit_key == f"{teacher.fingerprint}-int8-per-channel"
    assert not any(isinstance(m, device_mod.FullRangeLinear) for m in seven.model.modules())
    assert (int8.logit_key != seven.logit_key) == int8_full_range()
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())  # every nn.Linear swapped for int8
    assert type(teacher.model.head) is torch.nn.Linear  # the fp32 teacher is left alone
    fp32, q = teacher.logits(texts, progress=False), int8.logits(texts, progress=False)
    assert (fp32.argmax(1) == q.argmax(1)).mean() >= 0.9
    cache = LogitCache(tmp_path / "c.sqlite")
    int8.logits(texts, cache=cache, progress=False)
    assert all(row is None for row in cache.get(teacher.logit_key, texts))  # int8 never answers for fp32
    np.testing.assert_array_equal(np.stack(cache.get(int8.logit_key, texts)), q)


def test_int8_activations_get_8_bits_only_where_the_cpu_sums_them_without_overflow(monkeypatch):
    """The probe finds 7-bit-only kernels (here faked: pair sums saturating at 16 bits, as on x86 without VNNI);
    there the int8 model stays torch's own and its logits are keyed as before; elsewhere 8-bit activations."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    x = torch.randn(256, 32) * torch.linspace(0.1, 4, 32)  # uneven channels, as in an encoder
    exact = model(x).detach()
    real = torch.ops.quantized.linear_dynamic

    def saturating(x, packed, reduce_range=False):  # what 16-bit pair sums give the probe: about half
        out = real(x, packed, reduce_range=reduce_range)
        return out.clamp(max=32.0) if not reduce_range else out

    int8_full_range.cache_clear()
    monkeypatch.setattr(torch.ops.quantized, "linear_dynamic", saturating)
    try:
        assert not int8_full_range() and cache_tag("int8") == "int8-per-channel"
        seven = device_mod.quantize_int8(model)
        assert not any(isinstance(m, device_mod.FullRangeLinear) for m in seven.modules())
    finally:
        monkeypatch.undo()
        int8_full_range.cache_clear()
    if not int8_full_range():
        pytest.skip("this CPU's int8 kernels sum 8-bit pairs in 16 bits: only the 7-bit path runs here")
    assert cache_tag("int8") == "int8-per-channel-a8"
    eight = device_mod.quantize_int8(model)
    assert sum(isinstance(m, device_mod.FullRangeLinear) for m in eight.modules()) == 2
    err7, err8 = ((seven(x) - exact).abs().mean().item(), (eight(x) - exact).abs().mean().item())
    assert err8 < 0.75 * err7, (err7, err8)  # one more bit: about half the activation rounding error


def test_int8_guard_passes_or_falls_back_with_one_warning(teacher, monkeypatch, caplog):
    texts, labels = toy_texts(80, seed=7)
    chosen, decision = int8_guard(teacher, texts, labels, sample=50)
    assert decision["texts"] == 50 and decision["tolerance"] == 0.005
    assert 0 <= decision["int8_accuracy"] <= 1 and 0 <= decision["fp32_accuracy"] <= 1
    assert decision["precision"] == ("int8" if decision["int8_accuracy"] >= decision["fp32_accuracy"] - 0.005
                                     else "fp32")
    monkeypatch.setattr(device_mod, "INT8_TOLERANCE", -1.0)  # int8 would have to beat fp32 by 100 points
    with caplog.at_level(logging.WARNING, logger="tinydistill.device"):
        chosen, decision = int8_guard(teacher, texts, labels, sample=50)
    assert chosen is teacher and decision["precision"] == "fp32" and decision["requested"] == "int8"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "labelling in fp32" in warnings[0] and "\n" not in warnings[0]


def test_student_device_keeps_cpu_keys():
    assert "device" not in TrainConfig().to_dict()  # students cached before devices keep their keys
    assert TrainConfig(device="cuda").to_dict()["device"] == "cuda"


def test_pipeline_records_devices_and_labels_in_int8_where_the_guard_allows(tmp_path, monkeypatch, tiny_bert,
                                                                              no_gpu):
    from test_pipeline import config, write_csv

    from tinydistill import pipeline
    from tinydistill.task import load_task

    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    files = write_csv(tmp_path / "train.csv", 200, 0), write_csv(tmp_path / "test.csv", 60, 1)
    c = config(files, tiny_bert, tmp_path, label_precision="int8", speed=False, nods=False)
    results = pipeline.run(c, progress=False)
    hw = results["hardware"]
    assert hw["teacher_training"] == {"device": "cpu", "precision": "fp32"} and hw["students"] == "cpu"
    labelling = hw["labelling"]
    assert labelling["device"] == "cpu" and labelling["checked_on"] == "labelled texts it did not train on" \
        and labelling["texts"] == 160  # the 160 labels beyond the teacher's 40
    assert labelling["precision"] in ("int8", "fp32")
    teacher = pipeline.Teacher.from_pretrained(c.run_dir() / "teacher")
    assert json.loads((c.run_dir() / "teacher" / "teacher.json").read_text())["training"]["device"] == "cpu"
    cache = LogitCache(tmp_path / "cache" / "logits.sqlite")
    key = teacher.logit_key + (f"-{cache_tag('int8')}" if labelling["precision"] == "int8" else "")
    assert all(row is not None for row in cache.get(key, load_task(c).transfer))

    # the guard refusing int8: fp32 labels, and the teacher's key on the CPU is the one from before devices
    monkeypatch.setattr(device_mod, "INT8_TOLERANCE", -1.0)
    again = pipeline.run(config(files, tiny_bert, tmp_path, label_precision="int8", speed=False, nods=False,
                                out=str(tmp_path / "run2")), progress=False)
    assert again["hardware"]["labelling"]["precision"] == "fp32"
    task = load_task(c)
    recipe = get_recipe(c.recipe, epochs=c.teacher_epochs, lr=c.teacher_lr, max_length=c.max_length, seed=c.seed)
    assert pipeline._teacher_key(c.teacher, recipe, task, torch.device("cpu")) == \
        pipeline._teacher_key(c.teacher, recipe, task)


def test_cli_label_int8_needs_labels_to_check_against(tmp_path, monkeypatch, tiny_bert, teacher, capsys, caplog,
                                                        no_gpu):
    from test_pipeline import write_csv

    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    teacher.save_pretrained(tmp_path / "t")
    data = write_csv(tmp_path / "texts.csv", 30, 0)
    assert main(["-q", "label", str(tmp_path / "t"), "--data", data, "--out", str(tmp_path / "x.jsonl"),
                 "--device", "cpu", "--label-precision", "int8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labelling"] == {"device": "cpu", "precision": "fp32", "requested": "int8", "checked_on": None}

    # --check-data: labelled texts to check int8 on when the texts to label have none
    check = write_csv(tmp_path / "check.csv", 40, 3)
    assert main(["-q", "label", str(tmp_path / "t"), "--data", data, "--out", str(tmp_path / "x.jsonl"), "--device",
                 "cpu", "--label-precision", "int8", "--check-data", check, "--overwrite"]) == 0
    labelling = json.loads(capsys.readouterr().out)["labelling"]
    assert labelling["checked_on"] == f"labels of {check}" and labelling["texts"] == 40
    assert labelling["precision"] == ("int8" if labelling["int8_accuracy"] >= labelling["fp32_accuracy"] - 0.005
                                      else "fp32")
    assert labelling["fp32_accuracy"] >= 0.8  # the labels were aligned with the teacher's classes
    renamed = tmp_path / "renamed.csv"  # its own column names, given by --check-text-column and --label-column
    renamed.write_text(open(check).read().replace("text,label", "sentence,gold", 1))
    assert main(["-q", "label", str(tmp_path / "t"), "--data", data, "--out", str(tmp_path / "x.jsonl"), "--device",
                 "cpu", "--label-precision", "int8", "--check-data", str(renamed), "--check-text-column", "sentence",
                 "--label-column", "gold", "--overwrite"]) == 0
    again = json.loads(capsys.readouterr().out)["labelling"]
    assert again["texts"] == 40 and again["fp32_accuracy"] == labelling["fp32_accuracy"]
    # --check-data without int8 is not read, and says so rather than doing nothing in silence
    assert main(["-q", "label", str(tmp_path / "t"), "--data", data, "--out", str(tmp_path / "x.jsonl"), "--device",
                 "cpu", "--check-data", check, "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["labelling"]["precision"] == "fp32"
    assert "--check-data" in caplog.text and "only with --label-precision int8" in caplog.text
    bad = write_csv(tmp_path / "bad.csv", 4, 3, label_names=("neg", "meh"))
    for args, message in (([ "--check-data", bad], "bad.csv: row 2 has label 'meh'"),
                          (["--check-data", check, "--out", str(tmp_path / "shards")], "writes a .jsonl --out")):
        argv = ["-q", "label", str(tmp_path / "t"), "--data", data, "--out", str(tmp_path / "x.jsonl"), "--device",
                "cpu", "--label-precision", "int8", "--overwrite"]
        assert main(argv + args) == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err, err


def test_gpu_check_says_no_cuda_device_and_exits_0_on_a_cpu(no_gpu, monkeypatch, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    assert module.main() == 0
    assert capsys.readouterr().out.startswith("no CUDA device")
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--require-gpu"])
    assert module.main() == 3
