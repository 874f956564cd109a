"""Shape checks by the models, with every error in the loader's words.

pydantic says what went wrong in its own terms (``int_type`` at
``('doors', 1, 'unlock_seconds')``); people who write site files get the
file, the key path (``doors[1].unlock_seconds``), what was expected
(``a whole number from 1 to 60``) and what the file holds (``the string
'5'``), with the "did you mean" and "quote it" hints. The words come from the
models themselves: the field's ``Words`` (see ``shape``), its ranges and
choices, or a plain default for its type.

pydantic tries each member of a union and reports every failure, under a
tag naming the member (``literal['all']``, ``list[...]``). A member that
cannot fit what the file holds (a list where a mapping was written) is left
out; of the others, one problem per place is kept.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from passbridge.errors import Problem
from passbridge.site_file.describe import kind_of
from passbridge.site_file.shape import Words

_M = TypeVar("_M", bound=BaseModel)


def check_shape(
    model: type[_M], data: Any, *, file: str, context: Mapping[str, Any] | None = None
) -> tuple[_M | None, list[Problem]]:
    """The validated model, or None and every shape problem, placed and worded."""
    try:
        return model.model_validate(data, context=dict(context or {})), []
    except ValidationError as error:
        return None, shape_problems(model, data, error.errors(include_url=False), file)


@dataclass
class _Place:
    """Where an error points, and what the model says about the value there."""

    loc: list[str | int] = field(default_factory=list)
    value: Any = None
    meta: list[Any] = field(default_factory=list)  # Annotated metadata of the value
    union_meta: list[Any] = field(default_factory=list)  # of the union it was a member of
    leaf: Any = None  # the value's type
    parent: type[BaseModel] | None = None  # for an unknown key: the mapping it sits in
    misfit: bool = False  # a union member that cannot fit the value written

    @property
    def path(self) -> str:
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def words(self) -> Words:
        """The innermost ``Words`` that says what was expected (or the innermost at all)."""
        found = [m for m in (*self.union_meta, *self.meta) if isinstance(m, Words)]
        with_expected = [w for w in found if w.expected]
        return (with_expected or found or [Words()])[-1]

    def expected(self) -> str | None:
        own = [m for m in self.meta if isinstance(m, Words) and m.expected]
        if own:
            return own[-1].expected
        around = [m for m in self.union_meta if isinstance(m, Words) and m.expected]
        if around:
            return around[-1].expected
        described = [m.description for m in (*self.union_meta, *self.meta)
                     if isinstance(m, FieldInfo) and m.description]
        return described[-1] if self.union_meta and described else None

    def bounds(self) -> tuple[Any, Any]:
        lo = hi = None
        for m in self.meta:
            if isinstance(m, annotated_types.Ge):
                lo = m.ge
            elif isinstance(m, annotated_types.Le):
                hi = m.le
        return lo, hi


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """A type without its ``Annotated`` layers, and their metadata."""
    meta: list[Any] = []
    while get_origin(tp) is Annotated:
        tp, *more = get_args(tp)
        meta.extend(more)
    return tp, meta


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [m for m in get_args(tp) if m is not type(None)]
    return [tp]


def _kind(member: Any) -> str:
    inner, _ = _unwrap(member)
    origin = get_origin(inner)
    if origin is Literal:
        return "literal"
    if origin is list:
        return "list"
    return getattr(inner, "__name__", str(inner))


def _tag_kind(tag: str) -> str:
    return tag.split("[", 1)[0].removeprefix("constrained-").removeprefix("function-after")


def _fits(member: Any, value: Any) -> bool:
    inner, _ = _unwrap(member)
    if get_origin(inner) is list:
        return isinstance(value, list)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return isinstance(value, Mapping)
    return not isinstance(value, list | Mapping)


def _step_into(value: Any, part: str | int) -> Any:
    if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
        return value[part]
    if isinstance(part, str) and isinstance(value, Mapping):
        return value.get(part)
    return None


def _resolve(model: type[BaseModel], loc: Sequence[str | int], data: Any) -> _Place:
    place = _Place(value=data)
    tp: Any = model
    parts = list(loc)
    while True:
        tp, meta = _unwrap(tp)
        place.meta.extend(meta)
        members = _members(tp)
        if len(members) > 1:
            if not parts:
                break
            tag = str(parts.pop(0))
            chosen = next((m for m in members if _kind(m) == _tag_kind(tag)), members[0])
            place.union_meta, place.meta = place.meta, []
            if not _fits(chosen, place.value):
                place.misfit = True
                break
            tp = chosen
            continue
        if members[0] is not tp:  # T | None: None is not a member pydantic tags
            tp = members[0]
            continue
        if not parts:
            break
        part = parts.pop(0)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            place.loc.append(part)
            place.value = _step_into(place.value, part)
            place.union_meta = []
            info = tp.model_fields.get(part)
            if info is None:  # a key the model does not have
                place.parent, place.meta, tp = tp, [], None
                break
            place.meta = [info, *info.metadata]
            tp = info.annotation
            continue
        if get_origin(tp) is list and isinstance(part, int):
            place.loc.append(part)
            place.value = _step_into(place.value, part)
            place.meta, place.union_meta = [], []
            tp = get_args(tp)[0]
            continue
        place.loc.append(part)  # not expected: keep the place, say what pydantic said
        place.value = _step_into(place.value, part)
        tp = None
        break
    place.leaf = tp
    return place


_NUMBER_ERRORS = frozenset({
    "int_type", "int_from_float", "int_parsing", "greater_than_equal", "less_than_equal",
    "greater_than", "less_than", "float_type", "float_parsing", "finite_number",
})
_STRING_ERRORS = frozenset({"string_type", "string_too_short"})
_OWN_ERRORS = frozenset({"bad_id", "unknown_door"})
_MAPPING_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})


def _got(value: Any, words: Words) -> str:
    if words.echo:
        return kind_of(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return "a list" if isinstance(value, list) else kind_of(value)


def _message(error: ErrorDetails, place: _Place) -> str:
    kind = error["type"]
    value = error.get("input")
    words = place.words()
    expected = place.expected()
    got = _got(value, words)
    if kind == "extra_forbidden":
        allowed = list(place.parent.model_fields) if place.parent else []
        close = difflib.get_close_matches(str(place.loc[-1]), allowed, n=1)
        also = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{also}; expected one of: {', '.join(allowed)}"
    if kind == "missing":
        return "required, but missing"
    if kind in _OWN_ERRORS:  # raised by the models' own checks, already in these words
        return error["msg"]
    if kind in _MAPPING_ERRORS:
        leaf = place.leaf
        keys = ", ".join(leaf.model_fields) if isinstance(leaf, type) and issubclass(
            leaf, BaseModel) else ""
        return f"expected {expected or f'a mapping with keys {keys}'}; got {got}"
    if kind in ("list_type", "too_short"):
        return f"expected {expected or 'a list'}; got {got}"
    if kind == "bool_type":
        return f"expected true or false; got {got}"
    if kind in _NUMBER_ERRORS:
        if expected is None:
            lo, hi = place.bounds()
            whole = "a number" if kind.startswith("float") else "a whole number"
            expected = f"{whole} from {lo} to {hi}" if lo is not None and hi is not None else whole
        return f"expected {expected}; got {got}"
    if kind in _STRING_ERRORS:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        hint = f" ({words.number_hint})" if number else ""
        return f"expected {expected or 'a non-empty string'}; got {got}{hint}"
    if kind in ("literal_error", "enum"):
        refusal = dict(words.refusals).get(value) if isinstance(value, str) else None
        if expected is None:
            choices = get_args(_unwrap(place.leaf)[0]) if place.leaf is not None else ()
            expected = "one of " + " | ".join(str(c) for c in choices)
        return f"{refusal}; expected {expected}" if refusal else f"expected {expected}; got {got}"
    described = [m.description for m in place.meta if isinstance(m, FieldInfo) and m.description]
    if kind == "string_too_long" and described:  # "a non-empty string" would say it badly
        expected = described[-1]
    elif expected is None and described:
        expected = described[-1]
    elif expected is None and kind == "string_pattern_mismatch":
        expected = f"text matching {error.get('ctx', {}).get('pattern')}"
    return f"expected {expected or error['msg']}; got {got}"


def shape_problems(
    model: type[BaseModel], data: Any, errors: Sequence[ErrorDetails], file: str
) -> list[Problem]:
    """pydantic's errors as placed problems, one per place, in the order found."""
    places = [(error, _resolve(model, error["loc"], data)) for error in errors]
    fitting = [p.path for _, p in places if not p.misfit]
    out: list[Problem] = []
    seen: set[str] = set()
    for error, place in places:
        path = place.path
        if place.misfit and any(_within(other, path) for other in fitting):
            continue  # another member of the union fits the value: its error is the one
        if path in seen:
            continue
        seen.add(path)
        out.append(Problem(file, path, _message(error, place)))
    return out


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith((f"{outer}.", f"{outer}[")) or not outer
