"""The commands around the models: `lmscope app` (the Streamlit app), `bench` (the benchmarks) and
`export-onnx` (an ONNX export checked against torch).
"""
from __future__ import annotations

import argparse
import json

from app.cli.io import quiet_transformers


def cmd_app(args):
    from app.launch import run_app

    return run_app(host=args.host, port=args.port)


def cmd_bench(args):
    from bench.run import main as bench_main

    return bench_main(full=args.full)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from model.onnx.export import export_onnx

    quiet_transformers()  # no weight-loading progress bars on the terminal
    report = export_onnx(args.model, Path(args.out), opset=args.opset, fp16=args.fp16,
                         decoder=getattr(args, "decoder", True))
    if getattr(args, "json", False):
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines()))
    return 0
