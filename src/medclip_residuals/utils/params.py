"""Typed, frozen parameter objects built from a pipeline's `parameters_<pipeline>.yml`.

Defaults live only in the YAML: a field without a value there is an error, and so is a key
that no field names (a typo must not be silently ignored). Each pipeline declares one
frozen dataclass that derives from `Parameters`; nodes build it with `parse` and read
attributes. Why not pydantic: it is not otherwise a dependency, and the checks needed here
(unknown and missing keys, scalar types, `Literal` choices, nesting) are a page of code.

Example:
    >>> from dataclasses import dataclass
    >>> from typing import Literal
    >>> @dataclass(frozen=True)
    ... class Grid(Parameters):
    ...     rows: int
    ...     method: Literal["gradcam", "layercam"]
    >>> Grid.parse({"rows": 2, "method": "gradcam"}, "explainability.grid").rows
    2
    >>> Grid.parse({"rows": 2, "methd": "gradcam"}, "explainability.grid")
    Traceback (most recent call last):
    ...
    medclip_residuals.utils.params.ParameterError: explainability.grid: unknown key 'methd' (known: method, rows)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

P = TypeVar("P", bound="Parameters")


class ParameterError(ValueError):
    """A parameter is unknown, missing, or of the wrong type or value; the message says where."""


@dataclasses.dataclass(frozen=True)
class Parameters:
    """Base of the project's parameter objects: `parse` a mapping, `check` cross-field rules."""

    @classmethod
    def parse(cls: type[P], raw: Mapping[str, Any] | P, where: str) -> P:
        """Build and check the object from the mapping Kedro passes as `params:<where>`.

        Args:
            raw: the parameters (an instance of `cls` is returned unchanged).
            where: the dotted name used in error messages, e.g. `explainability`.

        Raises:
            ParameterError: naming the key, what was expected and what was found.
        """
        if isinstance(raw, cls):
            return raw
        return _build(cls, raw, where)

    def check(self, where: str) -> None:
        """Cross-field rules; raise ParameterError. Subclasses override it."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists), e.g. to record in a metrics report."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ParameterError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        raise ParameterError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {keys} (known: {', '.join(sorted(fields))})"
        )
    missing = [name for name, f in fields.items() if name not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParameterError(f"{where}: missing {', '.join(missing)} (set in conf/base/parameters_*.yml)")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(raw[name], hints[name], f"{where}.{name}") for name in fields if name in raw}
    obj = cls(**values)
    if isinstance(obj, Parameters):
        obj.check(where)
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against the annotation `tp` (and converted: lists become tuples)."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = get_origin(tp) or (tp if tp in (list, tuple, dict, Mapping) else None)
    if origin in _BY_ORIGIN:
        return _BY_ORIGIN[origin](value, tp, where)
    if tp in _SCALARS:
        return _SCALARS[tp](value, where)
    raise TypeError(f"{where}: parameter type {tp!r} is not supported by utils.params")


def _convert_union(value: Any, tp: Any, where: str) -> Any:
    options = get_args(tp)
    if value is None:
        if type(None) in options:
            return None
        raise ParameterError(f"{where}: expected {_type_name(tp)}, got null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(value, option, where)
        except ParameterError as error:
            errors.append(str(error))
    raise ParameterError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is none of {_type_name(tp)}")


def _convert_literal(value: Any, tp: Any, where: str) -> Any:
    choices = get_args(tp)
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ParameterError(f"{where}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
    return value


def _convert_sequence(value: Any, tp: Any, where: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ParameterError(f"{where}: expected a list, got {value!r}")
    args = get_args(tp)
    if get_origin(tp) is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ParameterError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item = args[0] if args else Any
    return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))


def _convert_mapping(value: Any, tp: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ParameterError(f"{where}: expected a mapping, got {value!r}")
    key_type, item_type = get_args(tp) or (Any, Any)
    return {_convert(k, key_type, where): _convert(v, item_type, f"{where}.{k}") for k, v in value.items()}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{where}: expected an integer, got {value!r}")
    return value


def _exactly(kind: type) -> Any:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, kind):
            raise ParameterError(f"{where}: expected {kind.__name__}, got {value!r}")
        return value

    return check


def _null(value: Any, where: str) -> None:
    if value is not None:
        raise ParameterError(f"{where}: expected null, got {value!r}")


_SCALARS = {float: _number, int: _integer, bool: _exactly(bool), str: _exactly(str), type(None): _null}
_BY_ORIGIN = {
    Union: _convert_union,
    types.UnionType: _convert_union,
    Literal: _convert_literal,
    list: _convert_sequence,
    tuple: _convert_sequence,
    Sequence: _convert_sequence,
    dict: _convert_mapping,
    Mapping: _convert_mapping,
}
