"""Optional dependencies: each is an extra of the package (``pyproject.toml``) that only some features need.

``pip install 'air-align[all]'`` brings every one; the core (``AIRConfig``, ``AIRTrainer``, the meta-group schema,
the objectives and rewards) imports without them (``tests/test_core_imports.py``).
"""

import importlib
from types import ModuleType

EXTRAS = {
    "peft": "lora",
    "gguf": "gguf",
    "matplotlib": "plots",
    "math_verify": "math",
    "vllm": "vllm",
}
"""Module name -> the extra that installs it."""


def require(module: str, feature: str) -> ModuleType:
    """``module`` imported, or a ``ModuleNotFoundError`` that names the extra to install for ``feature``.

    >>> require("json", "reading JSON").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module.split(".")[0])
        fix = f"pip install 'air-align[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        message = f"{feature} needs the {module!r} package, which is not installed; fix: {fix}"
        raise ModuleNotFoundError(message) from err
