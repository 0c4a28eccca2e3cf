"""The one YAML loader for every YAML file or text air-align reads: configs, world specs, templates, reward configs.

PyYAML's ``safe_load`` runs no code, but it still expands a file without bound: ten levels of ten aliases
(``&a [*b, *b, …]``) are 500 bytes on disk and 10^10 values to any code that walks them (a ``repr`` in an error
message, a JSON dump), and nesting a few thousand levels deep overflows the recursion of its composer. So
:class:`BoundedLoader`:

- refuses aliases (``*name``; a merge key ``<<: *name`` too): a config, a world spec or a template list is written
  out in full, and nothing the project reads needs them (none of PyRIT's 655 template files uses one);
- refuses nesting deeper than :data:`MAX_YAML_DEPTH` collections;
- is only given text of at most :data:`MAX_YAML_BYTES` (:func:`read_yaml` reads no more than that from a file).

Every error is a :class:`YAMLInputError` (a ``ValueError``: the CLI prints ``error: …`` and exits 2) that names the
file, the line and the fix. Values shown in messages go through :func:`brief`, bounded whatever their size.

It uses libyaml's C parser when PyYAML was built with it (20× faster on PyRIT's templates), with the composer (where
aliases and nesting are seen) in Python; the pure-Python parser otherwise.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

MAX_YAML_BYTES = 4 << 20
"""Largest YAML read (4 MiB): the largest of PyRIT's template files is 0.1 MiB, a config or world spec a few KiB."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of lists / mappings in a YAML document; a config is one flat mapping, a world spec 4 deep."""


DEPTH_PROBLEM = f"nested more than {MAX_YAML_DEPTH} lists / mappings deep; flatten the document"


class YAMLInputError(ValueError):
    """A YAML file or text that cannot be read: not YAML, too large, too deep, or using aliases."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxtuple, _BRIEF.maxdict, _BRIEF.maxset = 3, 4, 4, 4, 4
_BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 60, 60, 40


def brief(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters, in time bounded whatever the size or depth of ``value``: for
    values shown in error messages.

    >>> brief(list(range(100)))
    '[0, 1, 2, 3, ...]'
    >>> brief("x" * 1000)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx'"
    """
    return _BRIEF.repr(value)


class BoundedComposer(Composer):
    """PyYAML's composer, refusing aliases and nesting deeper than :data:`MAX_YAML_DEPTH`."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"an alias (*{event.anchor[:40]}) found; aliases are not allowed (they can expand without bound): "
                "write the value out in full",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH and not self.check_event(yaml.ScalarEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    DEPTH_PROBLEM,
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


try:  # libyaml's parser when PyYAML was built with it
    from yaml._yaml import CParser

    class _Parser(CParser):
        def _init_parser(self, stream):
            CParser.__init__(self, stream)

except ImportError:
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):
        def _init_parser(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class BoundedLoader(BoundedComposer, _Parser, SafeConstructor, Resolver):
    """``yaml.SafeLoader``'s types (no Python objects), with :class:`BoundedComposer`'s limits."""

    def __init__(self, stream):
        self._init_parser(stream)
        BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def load_yaml(text: str, source: str, loader: type = BoundedLoader, hint: str = "") -> Any:
    """``text`` parsed with ``loader`` (:class:`BoundedLoader` or a subclass); ``source`` names it in errors.

    Raises:
        YAMLInputError: text over :data:`MAX_YAML_BYTES`, not YAML (the line and column), aliases, too deep;
            ``hint`` (what the text should be) is added to a syntax error.

    >>> load_yaml("a: [1, {b: c}]", "x.yaml")
    {'a': [1, {'b': 'c'}]}
    >>> try:
    ...     load_yaml("a: &x [1]\\nb: *x", "x.yaml")
    ... except YAMLInputError as err:
    ...     print(err)
    x.yaml: not usable YAML: an alias (*x) found; aliases are not allowed (they can expand without bound): write \
the value out in full (line 2, column 4)
    """
    if len(text) > MAX_YAML_BYTES:
        raise YAMLInputError(f"{source}: {len(text):,} characters of YAML, more than the {MAX_YAML_BYTES:,} read")
    try:
        return yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = " ".join(str(part) for part in (err.context, err.problem) if part)
        if isinstance(err, yaml.composer.ComposerError) or "maximum nesting depth" in what:
            # libyaml has its own cap of 1000 levels, which its scanner can meet before the composer meets ours
            what = DEPTH_PROBLEM if "maximum nesting depth" in what else what
            raise YAMLInputError(f"{source}: not usable YAML: {what}{where}") from None
        raise YAMLInputError(f"{source}: not valid YAML: {what}{where}{'; ' + hint if hint else ''}") from None
    except yaml.YAMLError as err:  # reader errors (a control character) and the like
        what = " ".join(str(err).split())[:300]
        raise YAMLInputError(f"{source}: not valid YAML: {what}{'; ' + hint if hint else ''}") from None


def read_yaml(path: str | Path, loader: type = BoundedLoader, hint: str = "") -> Any:
    """The YAML document in the file ``path`` (UTF-8, at most :data:`MAX_YAML_BYTES`), read by :func:`load_yaml`.

    Raises:
        YAMLInputError: too large, not UTF-8, or as :func:`load_yaml`; OSError: the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:  # read at most the cap + 1: a FIFO or /dev/zero never ends
        raw = f.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        raise YAMLInputError(
            f"{path}: more than {MAX_YAML_BYTES:,} bytes of YAML, the most air-align reads; a config, world spec "
            "or template list is far smaller: check that this is the right file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YAMLInputError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    return load_yaml(text, str(path), loader, hint)
