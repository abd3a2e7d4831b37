"""Files of the pre-commit-hook scenario: the `typedcalc` package with exactly
`n_type_errors` strict-mypy errors (one per untyped legacy helper), spread over
three modules, plus typed, correct core code."""

from __future__ import annotations

from typing import Any

PYPROJECT = """[project]
name = "typedcalc"
version = "1.0.0"
requires-python = ">=3.10"

[tool.mypy]
strict = true
files = ["src/typedcalc"]
"""

README = """# typedcalc

A small typed calculator library: parsing, evaluation and unit conversion.
"""

INIT = '''"""typedcalc: a small typed calculator."""

from typedcalc.engine import evaluate

__all__ = ["evaluate"]
'''

ENGINE = '''"""Expression evaluation."""

from __future__ import annotations

import operator
from collections.abc import Callable

OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}


def evaluate(left: float, op: str, right: float) -> float:
    """Apply one binary operator."""
    try:
        return OPERATORS[op](left, right)
    except KeyError:
        raise ValueError(f"unknown operator {op!r}") from None
'''

MODULES = ("parser", "units", "legacy")


def _module(name: str, indices: list[int]) -> str:
    lines = [f'"""{name.capitalize()} helpers (older code, not yet annotated)."""', ""]
    for i in indices:
        lines += [
            "",
            f"def legacy_{name}_{i}(value):",
            f'    """Helper {i} of the {name} module."""',
            f"    return value + {i % 7}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def generate(knobs: dict[str, Any]) -> dict[str, str]:
    """Every file of the repository, for these knob values."""
    n = int(knobs["n_type_errors"])
    buckets: dict[str, list[int]] = {m: [] for m in MODULES}
    for i in range(n):
        buckets[MODULES[i % len(MODULES)]].append(i)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "src/typedcalc/__init__.py": INIT,
        "src/typedcalc/engine.py": ENGINE,
    }
    for module, indices in buckets.items():
        files[f"src/typedcalc/{module}.py"] = _module(module, indices)
    return files
