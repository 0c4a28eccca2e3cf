"""The package's version, in one place (``pyproject.toml`` repeats it; ``tests/test_cli_errors.py`` checks they
agree)."""

__version__ = "0.1.0"
