"""`run --config` and `reproduce ... --config`: TOML, YAML or JSON files of option names; the command line wins."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields

import pytest

from tinydistill.cli import main, parse_args
from tinydistill.config import RunConfig

TOML = """
data = "reviews.csv"
text-column = "review"
label_column = "stars"
labeled = 300
students = ["cbow"]
transfer = ["more.csv", "pool/"]
no-nods = true
teacher_lr = 1e-3
recipe = "contrastive"
"""

YAML = """
data: reviews.csv
text-column: review
label_column: stars
labeled: 300
students: cbow
transfer: [more.csv, pool/]
nods: false
teacher_lr: 0.001
recipe: contrastive
"""


@pytest.mark.parametrize("name, text", [("run.toml", TOML), ("run.yaml", YAML)])
def test_config_file_sets_the_options_and_the_command_line_overrides(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    a = parse_args(["run", "--config", str(tmp_path / name), "--labeled", "50"])
    assert (a.data, a.text_column, a.label_column, a.labeled) == ("reviews.csv", "review", "stars", 50)
    assert (a.students, a.transfer, a.nods, a.teacher_lr, a.recipe) == (
        ["cbow"], ["more.csv", "pool/"], False, 1e-3, "contrastive")
    assert a.glove is True and a.seed == 0  # untouched options keep their defaults
    again = parse_args(["run", "--config", str(tmp_path / name), "--transfer", "other.txt"])
    assert again.transfer == ["other.txt"]  # replaced, not appended to


def test_a_run_folder_config_reads_back(tmp_path):
    config = RunConfig(data="reviews.csv", labeled=30, students=["bilstm"], glove=False, teacher_epochs=2.0,
                       transfer=["x.txt"], teacher="/models/t")
    (tmp_path / "config.resolved.json").write_text(json.dumps(asdict(config)))
    a = parse_args(["run", "--config", str(tmp_path / "config.resolved.json")])
    assert RunConfig(**{f.name: getattr(a, f.name) for f in fields(RunConfig)}) == config


@pytest.mark.parametrize("text, message", [
    ('labeled = 300\nlabelled = 5\n', "run.toml: unknown key 'labelled'"),
    ('labeled = "many"\n', "run.toml: labeled: invalid value 'many'"),
    ('loss = "hinge"\n', "run.toml: loss: 'hinge' is not one of ['mse', 'kl']"),
    ('no-glove = "yes"\n', "run.toml: no-glove must be true or false"),
    ('seed = [1, 2]\n', "run.toml: seed takes one value, not a list"),
    ('labeled = \n', "run.toml: not valid TOML"),
])
def test_bad_config_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "run.toml").write_text(text)
    assert main(["run", "--config", str(tmp_path / "run.toml")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_yaml_without_pyyaml_and_unknown_types(tmp_path, capsys, monkeypatch):
    (tmp_path / "run.yaml").write_text("labeled: 3\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    assert main(["run", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "reading YAML needs PyYAML" in capsys.readouterr().err
    (tmp_path / "run.ini").write_text("labeled=3\n")
    assert main(["run", "--config", str(tmp_path / "run.ini")]) == 2
    assert "expected .toml, .yaml or .json" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_reproduce_takes_a_config_and_records_it(tmp_path):
    (tmp_path / "t2.toml").write_text('datasets = "sst2,agnews"\nseeds = "0,1"\ntransfer-max = 10000\n'
                                      f'out = "{tmp_path / "rep"}"\npeers = ["fasttext", "model2vec"]\n')
    a = parse_args(["reproduce", "table2", "--config", str(tmp_path / "t2.toml"), "--transfer-max", "500"])
    assert (a.datasets, a.transfer_max, a.peers) == (["sst2", "agnews"], 500, ["fasttext", "model2vec"])
    resolved = json.loads((tmp_path / "rep" / "config.resolved.table2.json").read_text())
    assert resolved["transfer_max"] == 500 and resolved["datasets"] == ["sst2", "agnews"]
