"""Loading data: every format, label handling, sampling, and each bad input's one-line error."""

from __future__ import annotations

import gzip
import json

import pytest

from tinydistill.data import (
    Split,
    align_labels,
    check_trainable,
    load_file,
    load_hub,
    load_paper_dataset,
    split_from_hf,
    stratified_sample,
)
from tinydistill.errors import TinyDistillError


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name,content", [
    ("d.csv", "text,label\ngood film,pos\nbad film,neg\n"),
    ("d.tsv", "text\tlabel\ngood film\tpos\nbad film\tneg\n"),
    ("d.jsonl", '{"text": "good film", "label": "pos"}\n{"text": "bad film", "label": "neg"}\n'),
])
def test_text_formats_read_the_same(tmp_path, name, content):
    split = load_file(write(tmp_path / name, content))
    assert split.texts == ["good film", "bad film"]
    assert split.label_names == ["neg", "pos"]
    assert split.labels == [1, 0]


def test_parquet_and_custom_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"review": ["a", "b", "c"], "stars": [5, 1, 5]}), tmp_path / "d.parquet")
    split = load_file(tmp_path / "d.parquet", text_column="review", label_column="stars")
    assert split.label_names == ["1", "5"] and split.labels == [1, 0, 1]


def test_integer_labels_index_given_names(tmp_path):
    split = load_file(write(tmp_path / "d.csv", "text,label\nx,1\ny,0\n"), label_names=["neg", "pos"])
    assert split.labels == [1, 0] and split.label_names == ["neg", "pos"]


@pytest.mark.parametrize("content,message", [
    ("text,label\n", "no rows"),
    ("words,label\nx,1\n", "no column 'text'"),
    ("text,label\nx,1\n,0\n", "d.csv:3: empty text"),
    ("text,label\nx,1\ny,\n", "d.csv:3: missing label"),
])
def test_bad_files_name_the_place(tmp_path, content, message):
    with pytest.raises(TinyDistillError, match=message):
        load_file(write(tmp_path / "d.csv", content))


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(TinyDistillError, match="nope.csv: file not found"):
        load_file(tmp_path / "nope.csv")
    with pytest.raises(TinyDistillError, match="unknown file type"):
        load_file(write(tmp_path / "d.xml", "<a/>"))


def test_unknown_label_column_suggests_the_option(tmp_path):
    with pytest.raises(TinyDistillError, match="no column 'y'.*--label-column"):
        load_file(write(tmp_path / "d.csv", "text,label\nx,1\n"), label_column="y")


def test_non_utf8_bytes_name_the_file(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"text,label\ncaf\xe9,1\n")
    with pytest.raises(TinyDistillError, match=r"d.csv: byte \d+ is not valid UTF-8"):
        load_file(tmp_path / "d.csv")


def test_bad_jsonl_line_is_named(tmp_path):
    with pytest.raises(TinyDistillError, match="d.jsonl:2: not valid JSON"):
        load_file(write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{oops\n'))


def test_unknown_label_in_test_split():
    train_names = ["neg", "pos"]
    test = Split(["a", "b"], [0, 1], ["neg", "neutral"], "test.csv")
    with pytest.raises(TinyDistillError, match="test.csv: row 2 has label 'neutral'"):
        align_labels(test, train_names)
    reordered = align_labels(Split(["a"], [0], ["pos", "neg"], "t"), train_names)
    assert reordered.labels == [1]


def test_single_class_and_empty_are_refused():
    with pytest.raises(TinyDistillError, match="every example has the label 'pos'"):
        check_trainable(Split(["a", "b"], [1, 1], ["neg", "pos"], "d.csv"))
    with pytest.raises(TinyDistillError, match="empty dataset"):
        check_trainable(Split([], [], ["neg", "pos"], "d.csv"))


def test_stratified_sample_is_seeded_balanced_and_disjoint():
    labels = [0] * 80 + [1] * 20
    split = Split([f"t{i}" for i in range(100)], labels, ["a", "b"], "d")
    pick, rest = stratified_sample(split, 10, seed=3)
    assert sorted(pick.labels) == [0] * 8 + [1] * 2
    assert set(pick.texts).isdisjoint(rest.texts) and len(rest) == 90
    assert stratified_sample(split, 10, seed=3)[0].texts == pick.texts
    assert stratified_sample(split, 10, seed=4)[0].texts != pick.texts
    with pytest.raises(TinyDistillError, match="1000 labels requested but only 100"):
        stratified_sample(split, 1000)


def test_paper_dataset_from_a_data_folder(tmp_path, monkeypatch):
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"labels": ["negative", "positive"]}))
    with gzip.open(folder / "test.tsv.gz", "wt") as f:
        f.write("text\tlabel\na fine film .\t1\ndull\t0\n")
    monkeypatch.setenv("TINYDISTILL_DATA", str(tmp_path))
    split = load_paper_dataset("sst2")  # the paper's test split by default
    assert split.texts == ["a fine film .", "dull"] and split.labels == [1, 0]
    with pytest.raises(TinyDistillError, match="split 'dev' not found"):
        load_paper_dataset("sst2", "dev")
    with pytest.raises(TinyDistillError, match="unknown dataset"):
        load_paper_dataset("sst5")


def test_hub_dataset_through_the_datasets_library(tmp_path):
    """The ordinary `datasets` code path, on a dataset built and saved here (no network)."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features)
    split = split_from_hf(ds, "local/toy")
    assert split.label_names == ["neg", "pos"] and split.labels == [1, 0, 1]
    repo = tmp_path / "toy-dataset"  # laid out like a hub dataset repo: load_dataset(id) reads it the same way
    repo.mkdir()
    ds.to_parquet(str(repo / "train.parquet"))
    hub = load_hub(str(repo), "train")
    assert hub.texts == ["good", "bad", "fine"] and hub.labels is not None
    with pytest.raises(TinyDistillError, match="could not load from the hub"):
        load_hub(str(tmp_path / "no-such-dataset"), "train")
