"""`lmscope` command line. A contract other tools rely on: JSON shapes are documented in README.

Every error a user can cause exits with status 2 and one line `error: ...` on stderr; set
LMSCOPE_DEBUG=1 to see tracebacks of internal errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class UserError(ValueError):
    """Raised for bad command-line input."""


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _r(x: float, nd: int = 6) -> float | None:
    x = float(x)
    return None if x != x else round(x, nd)  # NaN -> null


def _text(args: argparse.Namespace, attr: str = "text") -> str:
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


def _load(ref: str):
    from model.load import load_model

    _quiet_transformers()
    return load_model(ref)


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        json.dump(payload, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human() + "\n")
    for w in payload.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# Commands


def cmd_models(args):
    from model.registry import list_models

    entries = list_models()
    payload = {"models": [e.to_json() for e in entries]}

    def human():
        if not entries:
            return "no models found (demo models live in assets/models; train one with `lmscope train`)"
        w = max(len(e.name) for e in entries)
        return "\n".join(f"{e.name:<{w}}  {e.source:<8} {e.model_type:<12} {e.architecture:<24} "
                         f"{e.size_bytes / 1e6:7.1f} MB  {e.note}" for e in entries)

    _emit(args, payload, human)
    return 0


def cmd_tokenize(args):
    from model.inspect import encode

    m = _load(args.model)
    enc = encode(m, _text(args), args.pair)
    payload = {"model": m.name, "tokens": [t.to_json() for t in enc.tokens], "num_tokens": len(enc.tokens),
               "warnings": enc.warnings}
    _emit(args, payload, lambda: " ".join(f"{t.text}({t.id})" for t in enc.tokens))
    return 0


def cmd_inspect(args):
    from model.inspect import inspect

    m = _load(args.model)
    r = inspect(m, _text(args), args.pair, top_k=args.top_k, pll=args.pll, logit_lens=args.logit_lens)
    asked_for_a_head = args.layer is not None or args.head is not None
    args.layer, args.head = args.layer or 0, args.head or 0
    payload: dict[str, Any] = {
        "model": m.name, "tokens": r.token_json(), "num_layers": r.num_layers, "num_heads": r.num_heads,
        "hidden_norms": [[_r(v, 4) for v in row] for row in r.hidden_norms], "warnings": r.warnings,
        "unavailable": r.unavailable,
    }
    if r.has_attention:
        a = r.attention(args.layer, args.head)
        payload.update(layer=args.layer, head=args.head, attention=[[_r(v) for v in row] for row in a])
        if r.head_summary is not None:
            hs = r.head_summary
            payload["summaries"] = {k: [[_r(v, 4) for v in row] for row in getattr(hs, k)]
                                    for k in ("entropy", "distance", "special_share", "max_entropy")}
    elif asked_for_a_head:
        raise UserError(r.unavailable.get("attention", "this model has no attention"))
    payload["masks"] = [mp.to_json() for mp in r.masks]
    if r.surprisal is not None:
        payload["surprisal_bits"] = [_r(v, 4) for v in r.surprisal]
        payload["surprisal_kind"] = r.surprisal_kind
    if r.pair is not None:
        payload["pair"] = {"kind": r.pair.kind, "prob": _r(r.pair.prob)}
    if r.logit_lens is not None:
        payload["logit_lens"] = {"tokens": r.logit_lens.tokens, "probs": r.logit_lens.probs.round(5).tolist()}

    def human():
        lines = [f"{m.name}: {len(r.tokens)} tokens, {r.num_layers} layers x {r.num_heads} heads"]
        lines.append(" ".join(t.text for t in r.tokens))
        if r.has_attention:
            lines.append(f"layer {args.layer} head {args.head}: each token's most-attended token")
            a = r.attention(args.layer, args.head)
            lines += [f"  {t.text:>14} -> {r.tokens[int(a[i].argmax())].text} ({a[i].max():.2f})" for i, t in enumerate(r.tokens)]
        for mp in r.masks:
            lines.append(f"[{mp.position}] " + ", ".join(f"{p.token} {p.prob:.3f}" for p in mp.predictions))
        if r.pair:
            lines.append(f"{r.pair.kind}: {r.pair.prob:.3f}")
        return "\n".join(lines)

    _emit(args, payload, human)
    return 0


def cmd_fill_mask(args):
    from model.inspect import inspect

    m = _load(args.model)
    if "mlm" not in m.info.capabilities:
        raise UserError(f"{m.name} is a {m.info.task} model and cannot fill masks; use a masked-LM model (BERT, RoBERTa, ALBERT)")
    text = _text(args)
    r = inspect(m, text, args.pair, top_k=args.top_k, summaries=False)
    if not r.masks:
        raise UserError(f"no mask token in the text: write {m.info.mask_token or '[MASK]'} where a word should be predicted")
    payload = {"model": m.name, "tokens": r.token_json(), "masks": [mp.to_json() for mp in r.masks], "warnings": r.warnings}
    _emit(args, payload, lambda: "\n".join(
        f"[{mp.position}] " + ", ".join(f"{p.token} {p.prob:.3f}" for p in mp.predictions) for mp in r.masks))
    return 0


def cmd_generate(args):
    from model.generate import generate

    m = _load(args.model)
    if "causal" not in m.info.capabilities:
        raise UserError(f"{m.name} is a {m.info.task} model and cannot generate; use a causal model (GPT-2, ELMo)")
    res = generate(
        m, _text(args, "prompt"), strategy=args.strategy, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, typical_p=args.typical_p,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams, seed=args.seed,
        length_penalty=args.length_penalty,
        early_stopping={"false": False, "true": True, "never": "never"}[args.early_stopping],
    )
    payload = res.to_json()
    payload["model"] = m.name
    _emit(args, payload, lambda: res.prompt + res.text)
    return 0


def cmd_app(args):
    from app.launch import run_app

    return run_app(host=args.host, port=args.port)


def cmd_train(args):
    from model.train.run import run_train

    return run_train(args)


def cmd_bench(args):
    from bench.run import main as bench_main

    return bench_main(full=args.full)


def cmd_demo_models(args):
    from model.train.demo import build_demo_models

    build_demo_models(args.out, only=args.only, scale=args.scale)
    return 0


# ---------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `error: ...` and status 2 like every other user error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI. `command`: the subcommand about to run -- `train` and `export-onnx` import torch to
    declare their own arguments (~2 s), so they are declared only when that command runs."""
    p = _Parser(prog="lmscope", description="Look inside BERT- and GPT-2-style language models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp, text=True):
        sp.add_argument("model", help="a path (model directory or .onnx file) or a name from `lmscope models`")
        if text:
            sp.add_argument("text", nargs="?", help="the input text, or - for stdin")
            sp.add_argument("--file", help="read the text from this UTF-8 file")
            sp.add_argument("--pair", help="second sentence (NSP / sentence order)")
        sp.add_argument("--json", action="store_true", help="print JSON")

    sp = sub.add_parser("models", help="list models found on this disk")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser("tokenize", help="show how the model's tokenizer cuts a text")
    common(sp)
    sp.set_defaults(func=cmd_tokenize)

    sp = sub.add_parser("inspect", help="tokens, one head's attention map, summaries and predictions")
    common(sp)
    sp.add_argument("--layer", type=int, default=None, help="default 0")
    sp.add_argument("--head", type=int, default=None, help="default 0")
    sp.add_argument("--top-k", type=int, default=5)
    sp.add_argument("--pll", action="store_true", help="masked LM: pseudo-log-likelihood per token")
    sp.add_argument("--logit-lens", action="store_true", help="each layer's top predictions")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("fill-mask", help="predict [MASK] / <mask> tokens")
    common(sp)
    sp.add_argument("--top-k", type=int, default=5)
    sp.set_defaults(func=cmd_fill_mask)

    sp = sub.add_parser("generate", help="continue a prompt (greedy, sampling or beam search)")
    sp.add_argument("model")
    sp.add_argument("prompt", nargs="?", help="the prompt, or - for stdin")
    sp.add_argument("--file", help="read the prompt from this UTF-8 file")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="greedy")
    sp.add_argument("--temperature", type=float, default=1.0)
    sp.add_argument("--top-k", type=int, default=0, help="0 = off")
    sp.add_argument("--top-p", type=float, default=1.0)
    sp.add_argument("--typical-p", type=float, default=1.0)
    sp.add_argument("--min-p", type=float, default=0.0)
    sp.add_argument("--repetition-penalty", type=float, default=1.0)
    sp.add_argument("--num-beams", type=int, default=4)
    sp.add_argument("--length-penalty", type=float, default=1.0, help="beam: score / length**penalty")
    sp.add_argument("--early-stopping", choices=["false", "true", "never"], default="false",
                    help="beam: stop when num-beams hypotheses are done (true), as transformers' early_stopping")
    sp.add_argument("--max-new-tokens", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("app", help="start the Streamlit app (headless)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8501)
    sp.set_defaults(func=cmd_app)

    sp = sub.add_parser("train", help="train a small BERT / RoBERTa / ALBERT / GPT-2 / ELMo")
    try:
        if command != "train":
            raise ImportError("not needed for this command")
        from model.train.run import add_train_arguments

        add_train_arguments(sp)
    except ImportError:  # training engine not installed in this build
        pass
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("export-onnx", help="export a model to ONNX with its attention maps, checked against torch")
    if command == "export-onnx":
        from model.export_onnx import add_export_arguments, run_export

        add_export_arguments(sp)
        sp.set_defaults(func=run_export)

    sp = sub.add_parser("bench", help="run the benchmarks against baselines measured in the same run")
    sp.add_argument("--full", action="store_true", help="the long version")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("demo-models", help="train the demo models shipped in assets/models")
    sp.add_argument("--out", default="assets/models")
    sp.add_argument("--only", nargs="*", help="demo models to build: gpt2 bert roberta albert elmo (toy world), en-bert en-gpt2 (real English); default: all")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (e.g. 0.05 for a smoke test)")
    sp.set_defaults(func=cmd_demo_models)
    return p


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
    except (ValueError, OSError, UnicodeError) as e:
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


if __name__ == "__main__":
    sys.exit(main())
