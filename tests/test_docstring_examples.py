"""Every ```python example in the package's docstrings runs as written."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neo_keras"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                continue
            docstring = ast.get_docstring(node, clean=False) or ""
            for number, block in enumerate(_BLOCK.findall(docstring)):
                name = getattr(node, "name", "module")
                found.append((f"{path.relative_to(PACKAGE)}:{name}:{number}", block))
    return found


EXAMPLES = examples()


def test_there_are_examples_to_run():
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_the_example_runs(code):
    exec(compile(textwrap.dedent(code), "<docstring example>", "exec"), {})
