"""The package's layout: the core library never imports the paper's experiments, and the CLI lists every
sub-command and takes the global flags on either side of it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tinydistill
from tinydistill.cli import build_parser, main

PACKAGE = Path(tinydistill.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` names in a file, wherever the statement sits."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def core_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("paper", "cli")]


def test_the_core_never_imports_the_paper():
    assert len(core_modules()) > 15
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p)
                                                     if m == "tinydistill.paper" or m.startswith("tinydistill.paper."))
                 for p in core_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_never_imports_the_cli_nor_argparse():
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p)
                                                     if m == "argparse" or m.startswith("tinydistill.cli"))
                 for p in core_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_building_the_parser_imports_no_torch():
    import subprocess

    code = "import sys; from tinydistill.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_run_takes_every_run_config_field():
    from dataclasses import fields

    from tinydistill.cli.pipeline import RUN_OPTIONS
    from tinydistill.config import RunConfig

    assert sorted(RUN_OPTIONS) == sorted(f.name for f in fields(RunConfig))  # run --help keeps its own order
    a = build_parser().parse_args(["run"])
    assert all(getattr(a, f.name) == getattr(RunConfig(), f.name) for f in fields(RunConfig))


def test_every_sub_command_is_listed(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for command in ("run", "train-teacher", "label", "distil", "evaluate", "fetch-teacher", "augment", "export",
                    "predict", "serve", "push", "reproduce"):
        assert f"    {command} " in listed


@pytest.mark.parametrize("argv", [["-q", "--threads", "2", "predict", "m"], ["predict", "m", "-q", "--threads", "2"],
                                  ["-q", "predict", "m", "--threads", "2"],
                                  ["reproduce", "table2", "-q", "--threads", "2"]])
def test_global_flags_before_or_after_the_sub_command(argv):
    a = build_parser().parse_args(argv)
    assert a.quiet is True and a.threads == 2


def test_global_flags_default_when_absent():
    a = build_parser().parse_args(["predict", "m"])
    assert a.quiet is False and a.threads is None


def test_a_missing_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tinydistill.serve", None)  # `import tinydistill.serve` raises ImportError
    assert main(["serve", "some-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'tinydistill[serve]'" in err[0]
