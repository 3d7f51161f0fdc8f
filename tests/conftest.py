"""Shared fixtures: a tiny random BERT teacher and a toy sentiment dataset, all built in-process."""

from __future__ import annotations

import contextlib
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)  # the models here are tiny: one thread is fastest, and CI's 2 cores may be shared

POSITIVE = ["good", "great", "fine", "superb", "lovely", "fun"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "ugly"]
FILLER = ["the", "film", "was", "a", "movie", "plot", "and", "really", "very", "it"]


def toy_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Sentences whose label is given by which sentiment words they hold."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label else NEGATIVE, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A folder holding a random 2-layer BERT and a word-piece tokenizer over the toy words."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER, "!", ".", ","]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab) + 3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(folder)


@contextlib.contextmanager
def killed_at_step(monkeypatch, n: int):
    """Teacher fine-tuning raises KeyboardInterrupt inside its `n`-th step (a kill: steps 1 to n-1 are done),
    until the block ends."""
    from tinydistill import finetune

    original, calls = finetune._step, [0]

    def step(*args):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        original(*args)

    monkeypatch.setattr(finetune, "_step", step)
    try:
        yield
    finally:
        monkeypatch.setattr(finetune, "_step", original)
