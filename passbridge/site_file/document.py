"""Reading a YAML or JSON file into a mapping; every failure is a placed ConfigError."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from passbridge.errors import ConfigError, Problem
from passbridge.site_file.describe import kind_of

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice is an error, not
    "last wins", and dates stay strings.

    PyYAML turns an unquoted ``2027-02-29`` into a date while it parses, and
    an impossible one raises a bare ValueError with no place. Here a date or
    timestamp is kept as the text written; the site and scenario checkers
    read it (``Checker.day``, a step's ``at``) and report a bad one with the
    file and key path, like any other bad value.
    """

    # Without the implicit timestamp resolver, and with an explicit
    # ``!!timestamp`` read as its text too.
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_text(self, node: yaml.Node) -> str:
        return str(self.construct_scalar(node))  # type: ignore[arg-type]

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


_StrictLoader.add_constructor(_TIMESTAMP_TAG, _StrictLoader.construct_text)


def load_document(path: Path) -> tuple[Mapping[str, Any], str]:
    """Read a YAML or JSON file into a mapping; also return the name to use in errors.

    Any failure (missing file, bad encoding, bad YAML with its line, a top level
    that is not a mapping) is a ConfigError.
    """
    label = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(label, "", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_document(raw, label, json_only=path.suffix.lower() == ".json"), label


def parse_document(raw: str | bytes, label: str, *, json_only: bool = False) -> Mapping[str, Any]:
    """A document already in memory (a file's bytes, a ``PUT /v1/site`` body)
    as a mapping; every failure is a ConfigError placed at ``label``.

    YAML is a superset of JSON, so a JSON body reads as YAML too, with the
    same duplicate-key refusal; ``json_only`` reads strictly as JSON (a
    ``.json`` file, whose errors then speak JSON's terms).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError([Problem(label, "", f"not UTF-8 text ({exc.reason})")]) from None
    else:
        text = raw
    try:
        if json_only:
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
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        # ValueError/OverflowError: a value PyYAML itself could not build
        # (a safety net; dates no longer get that far).
        raise ConfigError([Problem(label, "", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(label, "", f"expected a mapping with keys site, doors, users, trust; "
                                f"the file holds {kind_of(data)}")]
        )
    return data
