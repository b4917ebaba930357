"""Every module's docstring examples run: each module of app/, model/, kernels/ and bench/ whose source
has a `>>>` example is collected here, so a new example is tested without anyone listing it (examples
marked `# doctest: +SKIP` need a demo model or a trained run and are read, not run)."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for pkg in ("app", "model", "kernels", "bench")
    for p in (ROOT / pkg).rglob("*.py")
    if ">>> " in p.read_text(encoding="utf-8")
)


def test_modules_with_examples_are_found():
    assert "kernels.sampling" in MODULES and "model.train.toyworld" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (see the output above)"
