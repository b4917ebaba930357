"""The errors lmscope raises when what a user asked cannot be done: bad text, sizes, settings, names, files.

The front ends (`lmscope`, the pages) catch `LmscopeError` and show its one-line message; any other
exception is a bug and keeps its traceback. Every class is a ValueError, so code that catches ValueError
still catches them. Modules with errors of their own (model.guard, model.jobs, model.train.config, ...)
derive them from LmscopeError. Torch-free.
"""
from __future__ import annotations


class LmscopeError(ValueError):
    """A request refused because of something the user can fix; the message says what and how."""


class ModelLoadError(LmscopeError):
    """A model cannot be loaded; the message says why and what to do."""


class InputError(LmscopeError):
    """The text (or a setting) cannot be used; the message says why."""


class Unavailable(LmscopeError):
    """This model cannot give the view asked for (e.g. queries and keys from an ONNX graph); the message says why."""


class ExportError(LmscopeError):
    """A model cannot be exported, or its export does not reproduce it; nothing was written."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message for a one-line error (its class name when it has none)."""
    s = str(e).strip()
    return s.splitlines()[0][:limit] if s else type(e).__name__
