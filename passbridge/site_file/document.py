"""Reading a YAML or JSON file into a mapping; every failure is a placed ConfigError."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from passbridge.errors import ConfigError, Problem
from passbridge.site_file.describe import kind_of


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice is an error, not "last wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                duplicate = False  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} is given twice",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_document(path: Path) -> tuple[Mapping[str, Any], str]:
    """Read a YAML or JSON file into a mapping; also return the name to use in errors.

    Any failure (missing file, bad encoding, bad YAML with its line, a top level
    that is not a mapping) is a ConfigError.
    """
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(label, "", f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigError([Problem(label, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem(label, f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise ConfigError([Problem(label, where, f"not valid YAML: {what}")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError([Problem(label, "", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(label, "", f"expected a mapping with keys site, doors, users, trust; "
                                f"the file holds {kind_of(data)}")]
        )
    return data, label
