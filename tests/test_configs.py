"""The one config validator (``air_align/configs.py``): every problem of a mapping reported at once, each at its key
path with the fix; conversions by type hint (text from a command line, YAML 1.1's yes / no); the inverse mapping."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest
from _messages import assert_facts, raises_with

from air_align.configs import ConfigError, build, to_dict


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    weight: float = field(default=1.0, metadata={"check": lambda v: None if v > 0 else f"must be > 0, got {v}"})
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["fast", "slow"] = "fast"
    count: int = 1
    on: bool = False
    ratio: float | None = None
    pair: tuple[float, float] = (0.0, 1.0)
    inner: Inner = Inner()
    items: tuple[Inner, ...] = ()
    table: dict[Literal[0, 1], dict[str, float]] = field(default_factory=dict)
    colour: Colour = Colour.RED
    seed: int = field(default=0, metadata={"check": lambda v: None if v >= 0 else "negative", "fix": "use 0 or more"})

    def problems(self):
        if self.mode == "slow" and self.count > 3:
            return [("count", f"slow mode takes at most 3, got {self.count}")]
        return []


def test_every_problem_is_reported_at_once_with_its_key_path():
    data = {
        "mode": "medium",  # not a Literal value
        "count": "many",  # not an integer
        "on": "maybe",  # not a boolean
        "ratio": float("nan"),  # not finite
        "pair": [1.0],  # one value of two
        "inner": {"weight": -2.0, "tag": ["x"]},  # a check and a typo in a nested dataclass
        "items": [{"weight": 1.0}, {"weight": "heavy"}],  # a list of dataclasses
        "table": {2: {"a": 1.0}, 0: {"b": "x"}},  # a key outside the Literal, a value of the wrong type
        "colour": "green",
        "seed": -1,
        "nmae": "x",  # a typo of a required key: both the unknown and the missing key are named
    }
    with pytest.raises(ConfigError) as err:
        build(Outer, data, "o.yaml", "outer config")
    problems = err.value.problems
    expected = [  # each problem: its key path, then the bad value and what would fit (or the fix)
        ("nmae", "unknown key", "did you mean 'name'"),
        ("name", "missing"),
        ("mode", "'medium'", "fast, slow"),
        ("count", "an integer", "'many'"),
        ("on", "true or false", "'maybe'"),
        ("ratio", "a finite number", "nan"),
        ("pair", "2 values", "got 1", "[1.0]"),
        ("inner.tag", "unknown key", "did you mean 'tags'"),
        ("inner.weight", "> 0", "-2.0"),
        ("items[1].weight", "a number", "'heavy'"),
        ("table.2", "not one of 0, 1"),
        ("table.0.b", "a number", "'x'"),
        ("colour", "'green'", "red, blue"),
        ("seed", "negative", "use 0 or more"),
    ]
    for path, *facts in expected:
        at = [p for p in problems if p.startswith(f"{path}: ")]
        assert any(all(fact in p for fact in facts) for p in at), (path, facts, problems)
    assert len(problems) == len(expected)
    message = str(err.value)  # the source, the config's name, how many problems, then one a line
    assert message.startswith("o.yaml: ") and "\n  - " in message, message
    assert_facts(message.splitlines()[0], "outer config", f"{len(expected)} problems")


def test_text_is_typed_by_the_field_and_yaml_booleans_are_words():
    # a command line or a YAML 1.2 file gives text: the field's type decides what it is
    built = build(Outer, {"name": 7, "count": "8", "on": "yes", "ratio": "5e-7", "pair": ["1", 2], "colour": "blue"})
    assert built.name == "7" and built.count == 8 and built.on is True and built.ratio == 5e-7
    assert built.pair == (1.0, 2.0) and built.colour is Colour.BLUE
    words = ("no", "Off", "TRUE", False)
    assert [build(Outer, {"name": "x", "on": w}).on for w in words] == [False, False, True, False]
    assert build(Outer, {"name": "x", "count": 2.0}).count == 2  # a whole number written as a float
    with raises_with(ConfigError, "count: ", "an integer", "float 2.5"):
        build(Outer, {"name": "x", "count": 2.5})
    with raises_with(ConfigError, "count: ", "an integer", "boolean", "True"):
        build(Outer, {"name": "x", "count": True})  # True is not 1
    with raises_with(ConfigError, "ratio: ", "a number", "'half'"):
        build(Outer, {"name": "x", "ratio": "half"})


def test_checks_across_fields_run_even_when_a_field_is_refused():
    # count is refused by the class's own problems(); the bad weight of the nested dataclass is reported beside it
    with pytest.raises(ConfigError) as err:
        build(Outer, {"name": "x", "mode": "slow", "count": 5, "inner": {"weight": "x"}})
    inner, count = err.value.problems  # each problem leads with its key path, then the value and what fits
    assert inner.startswith("inner.weight: ") and count.startswith("count: "), err.value.problems
    assert_facts(inner, "a number", "'x'")
    assert_facts(count, "slow mode", "at most 3", "got 5")
    assert str(err.value).startswith("invalid Outer (2 problems):")
    with pytest.raises(ConfigError) as one:
        build(Outer, ["not", "a", "mapping"], "o.yaml")
    assert str(one.value).startswith("o.yaml: "), str(one.value)  # the source, what it should be, what it is
    assert_facts(str(one.value), "Outer", "a mapping", "list ['not', 'a', 'mapping']")


def test_to_dict_reads_back_to_an_equal_object():
    obj = build(
        Outer,
        {"name": "x", "mode": "slow", "ratio": 0.5, "items": [{"tags": ["a", "b"]}], "table": {1: {"a": 2.0}}},
    )
    data = to_dict(obj)
    assert data["items"] == [{"weight": 1.0, "tags": ["a", "b"]}] and data["colour"] == "red"
    assert "inner" in data and "tags" not in data["inner"]  # an empty collection is left out: it reads back as default
    assert build(Outer, data) == obj
