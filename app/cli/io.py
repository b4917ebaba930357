"""What the commands share: reading TEXT (an argument, `-` for stdin, or --file), loading a model with
transformers kept quiet, and printing the result as JSON or as lines for a person. A user's mistake is a
`UserError`: `lmscope` prints it as one line `error: ...` and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from model.errors import LmscopeError


class UserError(LmscopeError):
    """Raised for bad command-line input."""


def quiet_transformers() -> None:
    """Silence transformers' logging and progress bars: through the environment while it is not imported
    yet (importing it takes seconds; a refused load must not wait for it), else through its API."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def rounded(x: float, nd: int = 6) -> float | None:
    """`x` rounded for JSON; NaN becomes null.

    >>> rounded(0.1234567), rounded(float("nan"))
    (0.123457, None)
    """
    x = float(x)
    return None if x != x else round(x, nd)  # NaN -> null


def read_text(args: argparse.Namespace, attr: str = "text") -> str:
    """TEXT argument, `-` for stdin, or --file."""
    value = getattr(args, attr)
    path = getattr(args, "file", None)
    if path:
        try:
            raw = open(path, "rb").read()
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not valid UTF-8 (byte {e.start})") from None
    if value == "-":
        value = sys.stdin.read()
    if value is None:
        raise UserError("no text given (pass TEXT, '-' for stdin, or --file PATH)")
    try:  # invalid UTF-8 bytes in argv/stdin arrive as lone surrogates (surrogateescape)
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UserError(f"the text is not valid UTF-8 (character {e.start} is a lone surrogate or an undecodable byte)") from None
    return value


def load(ref: str, dtype: str = "float32"):
    from model.load import load_model

    quiet_transformers()
    return load_model(ref, dtype=dtype)


def emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], str]) -> None:
    """`payload` as one JSON line with --json, else `human()`; its warnings on stderr either way."""
    if getattr(args, "json", False):
        json.dump(payload, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human() + "\n")
    for w in payload.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
