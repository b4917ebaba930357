"""`lmscope` command line (`python -m app.cli`). A contract other tools rely on: JSON shapes are documented
in README. The arguments of every command: app/cli/arguments.py; the commands: look.py (one model),
beyond.py (beyond attention), training.py, tools.py (the app, the benchmarks, the ONNX export).

Every error a user can cause exits with status 2 and one line `error: ...` on stderr; set
LMSCOPE_DEBUG=1 to see tracebacks of internal errors.
"""
from __future__ import annotations

import os
import sys

from model.errors import LmscopeError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from app.cli.arguments import build_parser  # noqa: E402  (after the environment: nothing may reach a hub)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed `usage` and the error
        return 2 if e.code else 0
    try:
        return int(args.func(args) or 0)
    except (LmscopeError, OSError, UnicodeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        if os.environ.get("LMSCOPE_DEBUG"):
            raise
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: still one line, but a distinct status
        if os.environ.get("LMSCOPE_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              "rerun with LMSCOPE_DEBUG=1 for details", file=sys.stderr)
        return 1
