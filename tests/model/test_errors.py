"""model.errors: one base class for every refusal a user can cause, the class the front ends catch."""
import ast
from pathlib import Path

from model.errors import LmscopeError, first_line

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = {"BaseException", "Exception", "ValueError", "TypeError", "KeyError", "RuntimeError", "OSError"}
# Not errors: control-flow signals raised and caught inside one call, never seen by a front end.
SIGNALS = ["model/backends/recording.py:StopForward"]  # ends a forward pass after the layer asked for


def test_every_error_class_derives_from_the_base():
    """An exception class of lmscope's own derives from LmscopeError (directly or through another of
    ours), never from a built-in exception alone: the CLI and the pages catch LmscopeError, and anything
    else is a bug that must keep its traceback."""
    own = []
    for py in sorted([*(ROOT / "model").rglob("*.py"), *(ROOT / "app").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and {ast.unparse(b).split(".")[-1] for b in node.bases} & BUILTIN:
                own.append(f"{py.relative_to(ROOT)}:{node.name}")
    assert own == sorted(["model/errors.py:LmscopeError", *SIGNALS])
    assert issubclass(LmscopeError, ValueError)  # code that catches ValueError still catches every refusal


def test_first_line():
    assert first_line(ValueError("cannot read x\n  Traceback details")) == "cannot read x"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("  \n")) == "OSError"
    assert first_line(ValueError("x" * 1000)) == "x" * 300
