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

from model.errors import LmscopeError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class UserError(LmscopeError):
    """Raised for bad command-line input."""


def _quiet_transformers() -> None:
    """Silence transformers' logging and progress bars: through the environment while it is not imported
    yet (importing it takes seconds; a refused load must not wait for it), else through its API."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
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


def _load(ref: str, dtype: str = "float32"):
    from model.load import load_model

    _quiet_transformers()
    return load_model(ref, dtype=dtype)


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


def _params(n: int) -> str:
    """A parameter count for the models table: 4.4M, 494.0M, 1.5B ('' when unknown)."""
    return "" if not n else f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def cmd_models(args):
    from model.registry import list_models

    entries = list_models()
    payload = {"models": [e.to_json() for e in entries]}

    def human():
        if not entries:
            return "no models found (demo models live in assets/models; train one with `lmscope train`)"
        w = max(len(e.name) for e in entries)
        return "\n".join(f"{e.name:<{w}}  {e.source:<8} {e.model_type:<12} {e.architecture:<24} "
                         f"{e.size_bytes / 1e6:7.1f} MB  {_params(e.parameters):>7} {e.dtype:<8}  {e.note}" for e in entries)

    _emit(args, payload, human)
    return 0


def cmd_tokenize(args):
    m = _load(args.model)  # first: a refused load must not wait for torch's import
    from model.inspect import encode
    enc = encode(m, _text(args), args.pair)
    payload = {"model": m.name, "tokens": [t.to_json() for t in enc.tokens], "num_tokens": len(enc.tokens),
               "warnings": enc.warnings}
    _emit(args, payload, lambda: " ".join(f"{t.text}({t.id})" for t in enc.tokens))
    return 0


def cmd_inspect(args):
    m = _load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.inspect import inspect
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
    m = _load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.inspect import inspect
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
    m = _load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.generate import generate
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


def cmd_agreement(args):
    from model.probes import agreement

    m = _load(args.model)
    r = agreement(m, n=args.n, seed=args.seed, n_examples=args.examples)
    payload = r.to_json()

    def human():
        lines = [f"{m.name} ({r.objective}): subject-verb agreement on {int(r.counts[0])} toy-world probes (seed {r.seed})"]
        lines += [f"  {g:<22} {'-' if c == 0 else f'{a:6.1%}'}  ({c} probes)" for g, a, c in zip(r.groups, r.accuracy, r.counts)]
        if r.skipped:
            lines.append(f"  skipped {r.skipped} probes whose verb forms are not one token each")
        lines += [f"  [{e.kind}] {e.sentence}  ->  prefers '{e.preferred}' ({e.correct} {e.correct_score:.2f} vs "
                  f"{e.wrong} {e.wrong_score:.2f}){'' if e.ok else '  WRONG'}" for e in r.examples]
        return "\n".join(lines)

    _emit(args, payload, human)
    return 0


def cmd_attribute(args):
    from model.attribute import attribute

    m = _load(args.model)
    a = attribute(m, _text(args), target_position=args.target_position, target_token=args.target_token,
                  method=args.method, steps=args.steps)
    payload = a.to_json()
    payload["model"] = m.name

    def human():
        t = a.target
        head = (f"{a.method}: log p({t['token']!r} at {t['position']}) = {a.target_score:.4f} "
                f"(baseline {a.baseline_score:.4f})")
        return "\n".join([head] + [f"  {i:>3} {tok.text:>14} {s:+.4f}" for i, (tok, s) in enumerate(zip(a.tokens, a.scores))])

    _emit(args, payload, human)
    return 0


def cmd_neurons(args):
    from model.neurons import neurons

    m = _load(args.model)
    r = neurons(m, _text(args), layers=None if args.layer is None else [args.layer], k=args.k)
    payload = r.to_json()
    payload["model"] = m.name

    def human():
        lines = [f"{m.name}: NMF of layers {list(r.layers)} into {r.k} components (error {r.error:.3f})"]
        for c in range(r.k):
            lines.append(f"component {c}: " + " ".join(f"{t.text}:{v:.2f}" for t, v in zip(r.tokens, r.factors[:, c])
                                                       if v >= 0.5 * r.factors[:, c].max() > 0))
        return "\n".join(lines)

    _emit(args, payload, human)
    return 0


def cmd_project(args):
    from model import textsets
    from model.projector import project, token_states

    m = _load(args.model)
    layer = m.backend.num_layers if args.layer is None else args.layer
    ts = token_states(m, textsets.load(args.data), [layer], max_tokens=args.max_tokens)
    xy = project(ts.layer(layer), args.method)
    payload = {"model": m.name, "data": args.data, "layer": layer, "method": args.method,
               "points": [{"x": _r(x), "y": _r(y), "token": t, "label": lab, "text": int(i), "position": int(p),
                           "context": c} for (x, y), t, lab, i, p, c in
                          zip(xy, ts.tokens, ts.labels, ts.text_index, ts.position, ts.contexts)],
               "warnings": ts.warnings}
    _emit(args, payload, lambda: "\n".join(f"{x:9.3f} {y:9.3f}  {t:<14} {lab:<12} {c}" for (x, y), t, lab, c in
                                            zip(xy, ts.tokens, ts.labels, ts.contexts)))
    return 0


def cmd_search(args):
    from model import textsets
    from model.corpus_search import build_index, query_vector, search

    m = _load(args.model)
    layer = m.backend.num_layers if args.layer is None else args.layer
    index = build_index(m, textsets.load(args.data), max_tokens=args.max_tokens)
    hits = search(index, query_vector(m, _text(args), args.token, layer), layer, k=args.k, metric=args.metric)
    payload = {"model": m.name, "data": args.data, "layer": layer, "metric": args.metric, "index": str(index.path),
               "hits": [h.to_json() for h in hits], "warnings": []}
    _emit(args, payload, lambda: "\n".join(f"{h.rank:>3} {h.score:8.4f} {h.token:<14} {h.context}" for h in hits))
    return 0


def cmd_app(args):
    from app.launch import run_app

    return run_app(host=args.host, port=args.port)


def cmd_train(args):
    from model.train.run import run_train

    return run_train(config_from_args(args), quiet=args.quiet)


def cmd_finetune(args):
    from app.cli_finetune import run_finetune

    return run_finetune(args)


def cmd_distill(args):
    from app.cli_finetune import run_distill

    return run_distill(args)


def cmd_classify(args):
    from app.cli_finetune import human_classify, run_classify

    _quiet_transformers()
    payload = run_classify(args, _text(args))
    _emit(args, payload, lambda: human_classify(payload))
    return 0


def cmd_bench(args):
    from bench.run import main as bench_main

    return bench_main(full=args.full)


def cmd_demo_models(args):
    from model.train.demo import build_demo_models

    build_demo_models(args.out, only=args.only, scale=args.scale)
    return 0


# ---------------------------------------------------------------------------------------------------
# Arguments of the commands that import torch to declare them (declared only when that command runs).


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """`lmscope train` (and `torchrun ... -m app.cli train`): imports torch to list the architectures and presets."""
    from model.train.config import ARCHS
    from model.train.presets import PRESETS

    p.add_argument("arch", choices=ARCHS)
    p.add_argument("--corpus", default="toyworld", help="a .txt/.jsonl file, or toyworld / pydoc (built in)")
    p.add_argument("--out", required=True, help="output directory (runs/NAME makes it appear in `lmscope models`)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    for name, typ in (("steps", int), ("batch-size", int), ("seq-len", int), ("lr", float), ("warmup", int),
                      ("layers", int), ("heads", int), ("hidden", int), ("vocab-size", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep-last", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--mlm-probability", type=float, default=None, help="masked-LM selection rate (default: the preset's, 0.3)")
    p.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    p.add_argument("--whole-word", action="store_true", help="whole-word masking")
    p.add_argument("--char-cnn", action="store_true", help="ELMo: token vectors from their characters (char-CNN)")
    p.add_argument("--static-masking", dest="dynamic_masking", action="store_const", const=False, default=None)
    p.add_argument("--dynamic-masking", dest="dynamic_masking", action="store_const", const=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", dest="bf16", action="store_const", const=True, default=None,
                   help="bfloat16 autocast for matmuls (default: on when hidden >= 128 and a short matmul measurement finds bf16 faster on this CPU)")
    p.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="train in float32 throughout")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--quiet", action="store_true")




def config_from_args(a: argparse.Namespace):
    from model.train.config import TrainConfig

    return TrainConfig(
        arch=a.arch, out_dir=a.out, corpus=a.corpus, preset=a.preset, steps=a.steps, batch_size=a.batch_size,
        seq_len=a.seq_len, lr=a.lr, warmup=a.warmup, layers=a.layers, heads=a.heads, hidden=a.hidden,
        vocab_size=a.vocab_size, seed=a.seed, checkpoint_every=a.checkpoint_every, keep_last=a.keep_last,
        eval_every=a.eval_every, mlm_probability=a.mlm_probability, dropout=a.dropout, whole_word=a.whole_word, char_cnn=a.char_cnn,
        dynamic_masking=a.dynamic_masking, threads=a.threads, bf16=a.bf16, resume=a.resume,
    )


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    from model.onnx.export import OPSETS

    p.add_argument("model", help="a model directory or a name from `lmscope models`")
    p.add_argument("--out", required=True, help="the .onnx file to write (tokenizer and metadata go beside it)")
    p.add_argument("--opset", type=int, default=17, help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} (default 17)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the file; computes in float32)")
    p.add_argument("--no-decoder", dest="decoder", action="store_false",
                   help="causal LMs: skip FILE.decoder.onnx, the key/value-cache generation graph (a second copy of the weights)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    import transformers

    from model.onnx.export import export_onnx

    transformers.utils.logging.set_verbosity_error()  # no weight-loading progress bars on the terminal
    transformers.utils.logging.disable_progress_bar()
    report = export_onnx(args.model, Path(args.out), opset=args.opset, fp16=args.fp16,
                         decoder=getattr(args, "decoder", True))
    if getattr(args, "json", False):
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines()))
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

    def dtype_arg(sp):
        sp.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="load the weights in this dtype (bfloat16: half the memory, for a model that does not fit)")

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
    dtype_arg(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("fill-mask", help="predict [MASK] / <mask> tokens")
    common(sp)
    dtype_arg(sp)
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
    dtype_arg(sp)
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("agreement", help="subject-verb agreement per probe kind (no attractor / same / opposite number)")
    common(sp, text=False)
    sp.add_argument("--n", type=int, default=500, help="number of toy-world probes (1-5000)")
    sp.add_argument("--seed", type=int, default=4242, help="which probes (any seed but the training corpus's 0)")
    sp.add_argument("--examples", type=int, default=2, help="example probes shown per kind")
    sp.set_defaults(func=cmd_agreement)

    sp = sub.add_parser("attribute", help="saliency: each input token's share of one prediction (Captum)")
    common(sp, text=False)
    sp.add_argument("text", nargs="?", help="the input text, or - for stdin")
    sp.add_argument("--file", help="read the text from this UTF-8 file")
    sp.add_argument("--target-position", type=int, default=None, help="default: the first mask / the last token")
    sp.add_argument("--target-token", default=None, help="a vocabulary piece or id (default: the top prediction)")
    sp.add_argument("--method", choices=["grad_x_input", "integrated_gradients"], default="integrated_gradients")
    sp.add_argument("--steps", type=int, default=50, help="integrated gradients: integration points")
    sp.set_defaults(func=cmd_attribute)

    sp = sub.add_parser("neurons", help="feed-forward neuron activations factorized by NMF (Ecco)")
    common(sp, text=False)
    sp.add_argument("text", nargs="?", help="the input text, or - for stdin")
    sp.add_argument("--file", help="read the text from this UTF-8 file")
    sp.add_argument("--layer", type=int, default=None, help="one layer (default: all, side by side)")
    sp.add_argument("-k", type=int, default=5, help="components")
    sp.set_defaults(func=cmd_neurons)

    sp = sub.add_parser("project", help="2-D PCA / UMAP of the hidden states of a text collection's tokens")
    common(sp, text=False)
    sp.add_argument("--data", default="english", help="toyworld, english, pydoc, or a file (one text per line, "
                    "optionally label<TAB>text)")
    sp.add_argument("--layer", type=int, default=None, help="hidden-state row, 0 = embeddings (default: the last)")
    sp.add_argument("--method", choices=["pca", "umap"], default="pca")
    sp.add_argument("--max-tokens", type=int, default=5000)
    sp.set_defaults(func=cmd_project)

    sp = sub.add_parser("search", help="corpus search: tokens whose hidden states are nearest to one token's")
    common(sp, text=False)
    sp.add_argument("text", nargs="?", help="the query text, or - for stdin")
    sp.add_argument("--file", help="read the query text from this UTF-8 file")
    sp.add_argument("--token", type=int, required=True, help="index of the query token (see `lmscope tokenize`)")
    sp.add_argument("--data", default="english", help="toyworld, english, pydoc, or a file (one text per line)")
    sp.add_argument("--layer", type=int, default=None, help="hidden-state row, 0 = embeddings (default: the last)")
    sp.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    sp.add_argument("-k", type=int, default=10, help="nearest tokens listed")
    sp.add_argument("--max-tokens", type=int, default=20000, help="corpus tokens indexed (index kept under runs/search/)")
    sp.set_defaults(func=cmd_search)

    sp = sub.add_parser("app", help="start the Streamlit app (headless)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8501)
    sp.set_defaults(func=cmd_app)

    sp = sub.add_parser("train", help="train a small BERT / RoBERTa / ALBERT / GPT-2 / ELMo")
    try:
        if command != "train":
            raise ImportError("not needed for this command")
        add_train_arguments(sp)
    except ImportError:  # training engine not installed in this build
        pass
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("finetune", help="fine-tune a model: a sequence classifier, or more LM training on new text")
    if command == "finetune":
        from app.cli_finetune import add_finetune_arguments

        add_finetune_arguments(sp)
    sp.set_defaults(func=cmd_finetune)

    sp = sub.add_parser("distill", help="distill a smaller student from a teacher model")
    if command == "distill":
        from app.cli_finetune import add_distill_arguments

        add_distill_arguments(sp)
    sp.set_defaults(func=cmd_distill)

    sp = sub.add_parser("classify", help="a fine-tuned classifier's labels with probabilities")
    common(sp, text=False)
    sp.add_argument("text", nargs="?", help="the input text, or - for stdin")
    sp.add_argument("--file", help="read the text from this UTF-8 file")
    sp.set_defaults(func=cmd_classify)

    sp = sub.add_parser("export-onnx", help="export a model to ONNX with its attention maps, checked against torch")
    if command == "export-onnx":
        add_export_arguments(sp)
        sp.set_defaults(func=cmd_export_onnx)

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


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun worker (`torchrun ... -m app.cli train ...`)
        from model.train.run import exit_worker

        exit_worker(code)
    sys.exit(code)
