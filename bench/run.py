"""`lmscope bench [--full]`: run every benchmark and print one line per figure (ours, baseline measured in
the same run, ratio, target, PASS / FAIL / INFO, what both sides do). Exit status 1 when any figure misses
its target (INFO rows, which have none, never do), else 0. Benchmarks that are not installed in this build
are skipped with a line saying so."""
from __future__ import annotations

import importlib
import sys

# module -> function(full: bool) returning a list of figures (bench.engine.Figure, bench.onnx_latency.Row)
BENCHMARKS = ["bench.engine", "bench.onnx_latency", "bench.generation", "bench.train_speed", "bench.browser",
              "bench.beyond", "bench.families"]


def main(full: bool = False) -> int:
    missed: list[str] = []
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
            if fig.missed:
                missed.append(fig.name)
    if missed:
        print(f"{len(missed)} figure(s) missed their target: {'; '.join(missed)}", file=sys.stderr)
        return 1
    print("every figure with a target met it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(full="--full" in sys.argv))
