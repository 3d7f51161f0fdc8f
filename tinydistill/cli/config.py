"""`--config FILE` (for `run` and `reproduce`): a TOML, YAML or JSON file of option names and values that become
the defaults the command line overrides, converted and checked as the command line would be."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinydistill.errors import TinyDistillError


def read_config_file(path: str | Path) -> dict:
    """The options in a TOML, YAML (needs PyYAML) or JSON file, as a flat mapping of option names to values."""
    path = Path(path)
    if not path.is_file():
        raise TinyDistillError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            import tomllib  # Python 3.11+; on 3.10 the ImportError below says so

            values = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # PyYAML: optional, only for YAML config files
            except ImportError:
                raise TinyDistillError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML") \
                    from None
            values = yaml.safe_load(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise TinyDistillError(f"{path}: unknown config type {suffix or '(none)'}; expected .toml, .yaml or .json")
    except TinyDistillError:
        raise
    except ImportError:
        raise TinyDistillError(f"{path}: reading TOML needs Python 3.11+; use YAML or JSON") from None
    except Exception as exc:  # noqa: BLE001 - tomllib, yaml and json each raise their own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TinyDistillError(f"{path}: not valid {suffix[1:].upper()} ({first})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TinyDistillError(f"{path}: expected option names and values at the top level")
    return values


def config_defaults(parser: argparse.ArgumentParser, values: dict, path: str | Path) -> dict:
    """Map a config file's keys (option names, dashes or underscores) onto `parser`'s destinations, converted
    and checked as the command line would be; an unknown key or a bad value is a one-line error naming it."""
    options: dict[str, argparse.Action] = {}
    for known in parser._actions:
        if known.dest in ("help", "config", "quiet", "threads") or not known.option_strings:
            continue
        for flag in known.option_strings:
            if flag.startswith("--"):
                options[flag[2:].replace("-", "_")] = known
        options.setdefault(known.dest, known)
    out: dict = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        action = options.get(name)
        if action is None:
            raise TinyDistillError(f"{path}: unknown key {key!r}; expected option names such as "
                                   f"{', '.join(sorted(k for k in options if not k.startswith('no_'))[:12])}")
        if action.nargs == 0:  # a switch: --no-nods, or its destination `nods`
            if not isinstance(value, bool):
                raise TinyDistillError(f"{path}: {key} must be true or false (got {value!r})")
            out[action.dest] = value if name == action.dest else (action.const if value else action.default)
            continue
        if value is None:
            out[action.dest] = None
            continue
        if isinstance(action, argparse._AppendAction):  # --transfer: a list, or one value
            out[action.dest] = [_convert(action, item, key, path) for item in (
                value if isinstance(value, list) else [value])]
        elif isinstance(value, list):  # a comma-list option (--students): a TOML/YAML list is its items
            try:
                converted = _convert(action, ",".join(str(v) for v in value), key, path)
            except TinyDistillError:
                converted = None
            if not isinstance(converted, (list, tuple, dict)):
                raise TinyDistillError(f"{path}: {key} takes one value, not a list")
            out[action.dest] = converted
        else:
            out[action.dest] = _convert(action, value, key, path)
    return out


def _convert(action: argparse.Action, value, key: str, path: str | Path):
    """One config value through the option's own type and choices, as the command line would take it."""
    if isinstance(value, (dict, list, bool)):
        raise TinyDistillError(f"{path}: {key}: expected a {getattr(action.type, '__name__', 'string')}, "
                               f"not {value!r}")
    try:
        value = action.type(str(value)) if callable(action.type) else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise TinyDistillError(f"{path}: {key}: invalid value {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise TinyDistillError(f"{path}: {key}: {value!r} is not one of {list(action.choices)}")
    return value


def leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)sub-parser that parsed `args`, e.g. `reproduce table2`'s."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return leaf_parser(action.choices[getattr(args, action.dest)], args)
    return parser
