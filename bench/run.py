"""`lmscope bench [--full]`: run every benchmark and print one line per figure (ours, baseline measured in
the same run, ratio, target, PASS/FAIL). Benchmarks that are not installed in this build are skipped with
a line saying so."""
from __future__ import annotations

import importlib
import sys

# module -> function(full: bool) returning a list of bench.engine.Figure
BENCHMARKS = ["bench.engine", "bench.onnx_latency", "bench.generation", "bench.train_speed", "bench.browser",
              "bench.families"]


def main(full: bool = False) -> int:
    failed = 0
    for name in BENCHMARKS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                print(f"{name:<44} skipped: not in this build", flush=True)
                continue
            raise
        for fig in mod.run(full=full):
            print(fig.line(), flush=True)
            failed += not fig.passed
    print(f"{failed} figure(s) missed their target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(full="--full" in sys.argv))
