"""Settings as dataclasses, built from a mapping (a YAML file, ``key=value`` overrides) by one validator.

Train configs, world specs and reward configs are dataclasses; :func:`build` makes one from a mapping, walking its
fields by their type hints, and reports every problem at once, each as ``key.path: what is wrong; fix``:

- an unknown key, with the closest known name (``did you mean 'noise'?``);
- a missing required field (one without a default);
- a value of the wrong type. ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``, unions,
  ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[K, V]``, enums and nested dataclasses are understood.
  Text typed on a command line or in a YAML 1.2 file is converted where the field says what it is: ``"5e-7"`` to a
  float, ``"8"`` to an int, ``yes`` / ``no`` / ``on`` / ``off`` to a boolean, a number to text. Floats must be
  finite (a setting that means ``nan`` does not exist, and JSON has none);
- a value its field's check refuses: ``field(metadata={"check": fn, "fix": text})``, where ``fn(value)`` returns
  what is wrong (or None) and ``fix`` is added to every problem of that field; ``metadata={"schema": Cls}`` checks a
  mapping field against dataclass ``Cls`` and keeps it a mapping (a train config's ``reward_config``);
- what a dataclass's own ``problems()`` method finds across its fields (a family's sway must suit the world's kind):
  ``(relative key path, message)`` pairs, called once the object is built.

A field whose value has the wrong type takes its default while the rest is checked, so that the checks across fields
still run and report. :func:`to_dict` is the inverse: the mapping :func:`build` reads back to an equal object.

Pure standard library: every layer of the package may import it (``tests/test_layering.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union

from air_align.safe_yaml import brief

MAX_PROBLEM_CHARS = 500
"""A problem line names keys of the file, which may be long: a longer line is cut."""
BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
"""Text read as a boolean by a boolean field (YAML 1.1's words; a YAML 1.2 file or a command line gives text)."""


class ConfigError(ValueError):
    """A mapping that does not make a valid config; ``problems`` lists each as ``key.path: what is wrong; fix``.

    The CLI prints it as ``error: …`` and exits 2 (``air_align.cli.main``)."""

    def __init__(self, title: str, problems: Iterable[str] = ()):
        self.title, self.problems = title, list(problems)
        if not self.problems:
            text = title
        elif len(self.problems) == 1:
            text = f"{title}: {self.problems[0]}"
        else:
            text = f"{title} ({len(self.problems)} problems):\n  - " + "\n  - ".join(self.problems)
        super().__init__(text)


class Problems:
    """The problems found so far, each as ``(key path, what is wrong)``."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def lines(self) -> list[str]:
        out = [f"{path}: {message}" if path else message for path, message in self.items]
        return [
            line if len(line) <= MAX_PROBLEM_CHARS else line[: MAX_PROBLEM_CHARS - 20] + " … (cut)" for line in out
        ]

    def raise_if_any(self, title: str, error: type[ConfigError] = ConfigError) -> None:
        if self.items:
            raise error(title, self.lines())


class _Invalid:
    """A value that was refused (its problem is recorded)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()


def join(path: str, key: Any) -> str:
    """``path.key``: a key path, as problems name it.

    >>> join("", "judge"), join("judge", "noise"), join("rewards", 0)
    ('judge', 'judge.noise', 'rewards.0')
    """
    return f"{path}.{key}" if path else str(key)


def did_you_mean(key: Any, allowed: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest allowed name, or ``""``.

    >>> did_you_mean("noize", ["noise", "base"])
    "did you mean 'noise'? "
    """
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f"did you mean {brief(close[0])}? " if close else ""


def describe(hint: Any) -> str:
    """A type hint in words, for messages.

    >>> describe(int | None), describe(tuple[str, ...]), describe(Literal["a", "b"])
    ('an integer or null', 'a list of text', "one of 'a', 'b'")
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else ""
        )
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is dict or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "text"}.get(hint, describe(hint))


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {brief(value)}"


def convert(value: Any, hint: Any, path: str, problems: Problems) -> Any:
    """``value`` as the type ``hint`` says (see the module docstring), or :data:`INVALID` with its problem added."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(value, args, hint, path, problems)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(value, str) and not isinstance(choice, str) and value.strip() == str(choice):
                return choice  # a label written as text ("0"), or a key YAML read as text
        problems.add(path, f"{brief(value)} is not one of {', '.join(map(str, args))}; choose one of them")
        return INVALID
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            problems.add(path, f"expected a mapping of {hint.__name__} settings, {_got(value)}")
            return INVALID
        return _build_into(hint, value, path, problems)
    if origin in (tuple, list) or hint in (tuple, list):
        return _convert_sequence(value, origin or hint, args, hint, path, problems)
    if origin is dict or hint is dict:
        return _convert_mapping(value, args, path, problems)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
            return BOOL_WORDS[value.strip().lower()]
        problems.add(path, f"expected true or false, {_got(value)}")
        return INVALID
    if isinstance(value, bool) and hint in (int, float, str):
        problems.add(path, f"expected {describe(hint)}, not a boolean ({value}); write the value itself")
        return INVALID
    if hint is int:
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 2.0, or 1e3 in a YAML 1.2 file
        problems.add(path, f"expected an integer, {_got(value)}")
        return INVALID
    if hint is float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if not isinstance(number, int | float):
            problems.add(path, f"expected a number, {_got(value)}")
            return INVALID
        if not math.isfinite(number):
            problems.add(path, f"must be a finite number, got {number}")
            return INVALID
        return float(number)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)  # a name YAML read as a number (a slot value 3, a version 1.0)
        problems.add(path, f"expected text, {_got(value)}")
        return INVALID
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if value == member.value or value == member.name or value is member:
                return member
        problems.add(path, f"{brief(value)} is not one of {', '.join(str(m.value) for m in hint)}")
        return INVALID
    if isinstance(hint, type) and not isinstance(value, hint) and value is not None:
        problems.add(path, f"expected {describe(hint)}, {_got(value)}")
        return INVALID
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` already has the shape of union member ``hint`` (so that member is tried first)."""
    origin = typing.get_origin(hint) or hint
    if origin is Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(hint))
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    if origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    if hint in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(origin, type) and isinstance(value, origin)


def _convert_union(value, args, hint, path, problems):
    if value is None:
        if type(None) in args:
            return None
        problems.add(path, f"expected {describe(hint)}, got null")
        return INVALID
    members = [a for a in args if a is not type(None)]
    ordered = [m for m in members if _fits(value, m)] + [m for m in members if not _fits(value, m)]
    first_problems = None
    for member in ordered:
        trial = Problems()
        out = convert(value, member, path, trial)
        if not trial.items:
            return out
        if first_problems is None and (_fits(value, member) or len(ordered) == 1):
            first_problems = trial.items  # the member of the value's own shape says best what is wrong inside
    if first_problems is not None:
        problems.items.extend(first_problems)
    elif isinstance(value, bool):
        problems.add(path, f"expected {describe(hint)}, not a boolean ({value}); write the value itself")
    else:
        problems.add(path, f"expected {describe(hint)}, {_got(value)}")
    return INVALID


def _convert_sequence(value, origin, args, hint, path, problems):
    if not isinstance(value, list | tuple):
        problems.add(path, f"expected {describe(hint)}, {_got(value)}")
        return INVALID
    if args and args[-1] is not Ellipsis and origin is tuple:
        if len(value) != len(args):
            problems.add(path, f"expected {len(args)} values, got {len(value)}: {brief(value)}")
            return INVALID
        hints = list(args)
    else:
        hints = [args[0] if args else Any] * len(value)
    out = [convert(v, h, f"{path}[{i}]", problems) for i, (v, h) in enumerate(zip(value, hints, strict=True))]
    if any(v is INVALID for v in out):
        return INVALID
    return tuple(out) if origin is tuple else out


def _convert_mapping(value, args, path, problems):
    if not isinstance(value, Mapping):
        problems.add(path, f"expected a mapping, {_got(value)}")
        return INVALID
    key_hint, value_hint = args if args else (Any, Any)
    out = {}
    for key, item in value.items():
        where = join(path, key)
        k = convert(key, key_hint, where, problems)
        v = convert(item, value_hint, where, problems)
        if k is not INVALID and k in out:
            problems.add(where, f"the key {brief(k)} is given twice")
        elif k is not INVALID and v is not INVALID:
            out[k] = v  # a refused entry is left out, the rest still checked across fields
    return out


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields (``from __future__ import annotations`` leaves text)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # another library's class whose hints name what it never imports
        return {f.name: Any if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)}


def check_fields(
    fields: Mapping[str, dataclasses.Field],
    types_of: Mapping[str, Any],
    data: Mapping,
    path: str,
    problems: Problems,
    origin: Callable[[str], str] | None = None,
    known_keys: str | None = None,
) -> dict[str, Any] | None:
    """The constructor arguments for ``fields`` (of one dataclass, or several sharing one flat mapping, as a train
    config's ``RunConfig`` and ``AIRConfig``) from ``data``, each converted and checked, problems added to
    ``problems``; a value of the wrong type is left out (the field's default then stands), a missing required field
    makes the result None. ``origin(key)``, when given, says where a top-level key came from (``"the command
    line"``); ``known_keys`` replaces the list of allowed keys in an unknown key's message (for a config with
    hundreds of keys)."""

    def mark_origin(key: str, start: int) -> None:  # "key.sub (from the command line)", since problem ``start``
        at = join(path, key)
        if origin:
            problems.items[start:] = [
                (f"{p} (from {origin(key)})" if p == at or p.startswith((at + ".", at + "[")) else p, m)
                for p, m in problems.items[start:]
            ]

    for key in data:
        if key not in fields:
            allowed = known_keys or f"allowed: {', '.join(fields)}"
            problems.add(join(path, key), f"unknown key; {did_you_mean(key, fields)}{allowed}")
            mark_origin(key, len(problems.items) - 1)
    out: dict[str, Any] = {}
    complete = True
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.add(join(path, name), "missing (required)")
                complete = False
            continue
        before = len(problems.items)
        value = convert(data[name], types_of[name], join(path, name), problems)
        check = f.metadata.get("check")
        if value is not INVALID and value is not None and check is not None:
            message = check(value)
            if message:
                problems.add(join(path, name), message)  # the value stays (it is typed): checks across fields read it
        schema = f.metadata.get("schema")
        if value is not INVALID and isinstance(value, Mapping) and schema is not None:
            _build_into(schema, value, join(path, name), problems)  # checked, kept as the mapping it is
        fix = f.metadata.get("fix")
        if fix:
            problems.items[before:] = [(p, f"{m}; {fix}") for p, m in problems.items[before:]]
        mark_origin(name, before)
        if value is not INVALID:
            out[name] = value  # a nested mapping keeps what was valid in it, so checks across fields still run
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            complete = False
    return out if complete else None


def _build_into(cls: type, data: Mapping, path: str, problems: Problems) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = check_fields(fields, hints(cls), data, path, problems)
    if kwargs is None:
        return INVALID
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:  # a __post_init__ that refuses a combination
        problems.add(path, str(err))
        return INVALID
    for sub, message in obj.problems() if hasattr(obj, "problems") else ():
        problems.add(join(path, sub) if sub else path, message)
    return obj


def build(cls: type, data: Any, source: str = "", what: str = "", error: type[ConfigError] = ConfigError):
    """An instance of dataclass ``cls`` from the mapping ``data``.

    Raises:
        ConfigError (or ``error``): every problem of ``data``, headed by its ``source`` (a file) and ``what`` it
            is (the class name by default).

    >>> @dataclasses.dataclass
    ... class Knobs:
    ...     noise: float = 1.0
    ...     mode: Literal["a", "b"] = "a"
    >>> build(Knobs, {"noise": "0.5"})
    Knobs(noise=0.5, mode='a')
    >>> try:
    ...     build(Knobs, {"noize": 1, "mode": "c"}, "k.yaml", "knobs")
    ... except ConfigError as err:
    ...     print(err)
    k.yaml: invalid knobs (2 problems):
      - noize: unknown key; did you mean 'noise'? allowed: noise, mode
      - mode: 'c' is not one of a, b; choose one of them
    """
    title = f"{source + ': ' if source else ''}invalid {what or cls.__name__}"
    if not isinstance(data, Mapping):
        raise error(title, [f"expected a mapping of {cls.__name__} settings, {_got(data)}"])
    problems = Problems()
    obj = _build_into(cls, data, "", problems)
    problems.raise_if_any(title, error)
    return obj


def to_dict(obj: Any) -> Any:
    """The mapping :func:`build` reads back to an object equal to ``obj``: dataclasses become mappings of their
    fields, tuples lists, enums their values; a field that is None or an empty collection is left out (it reads
    back as its default).

    >>> @dataclasses.dataclass
    ... class Pair:
    ...     words: tuple[str, ...] = ()
    ...     note: str | None = None
    ...     weight: float = 1.0
    >>> to_dict(Pair(words=("a", "b")))
    {'words': ['a', 'b'], 'weight': 1.0}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or (isinstance(value, tuple | list | dict) and not value):
                continue
            out[f.name] = to_dict(value)
        return out
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj
