"""Checks of an error message by its key facts, not its whole sentence.

A message is tested for what its reader needs: the thing at fault (the field or key path, the file and line, the
option, the bad value) and the fix it names ("pass --overwrite", "use at least 1", "choose one of a, b"), plus, for
what ``air_align.cli.main`` prints, the house invariants: it starts with ``error: ``, is one line, has no traceback.
Each fact is its own substring check, so a rewording keeps passing while a message that loses its field or its fix
fails, and the failure names the fact that is missing.

    assert_error(capsys.readouterr().err, "--threads 0", "at least 1")
    with raises_with(ValueError, "max_steps", "'many'", "an integer"):
        load_config(...)
"""

import contextlib

import pytest


def assert_facts(text: str, *facts: str) -> None:
    """Every one of ``facts`` occurs in ``text`` (an exception's message or printed output)."""
    assert facts, "name at least one fact the message must carry"
    missing = [fact for fact in facts if fact not in text]
    assert not missing, f"the message lacks {missing}:\n{text}"


def assert_error(text: str, *facts: str, one_line: bool = True) -> None:
    """``text`` is what ``main()`` printed for a bad input: ``error: …`` carrying every fact and no traceback; with
    ``one_line`` (the default) exactly one line, ended by its newline. Pass ``one_line=False`` for the messages that
    list several problems, one per line."""
    assert text.startswith("error: "), text
    assert "Traceback" not in text, text
    if one_line:
        assert text.endswith("\n") and text.count("\n") == 1, f"not one line:\n{text}"
    assert_facts(text, *facts)


def error_line(output: str) -> str:
    """The one ``error: …`` line (with its newline) of ``output`` that also holds progress bars or notices printed
    before it (a progress bar redraws with a carriage return, so the line is taken from its ``error: ``)."""
    lines = [line[line.index("error: ") :] for line in output.splitlines(keepends=True) if "error: " in line]
    assert len(lines) == 1, f"expected one error line:\n{output}"
    return lines[0]


@contextlib.contextmanager
def raises_with(kind: type[BaseException], *facts: str):
    """``pytest.raises(kind)`` whose message carries every one of ``facts``; yields pytest's ``ExceptionInfo``."""
    with pytest.raises(kind) as info:
        yield info
    assert_facts(str(info.value), *facts)
