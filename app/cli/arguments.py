"""Every `lmscope` command's arguments, in one place: `build_parser` declares the commands (with the model,
input text and dtype arguments most of them take), the `add_*` helpers the other groups several commands
share (hidden states of a text set, a training run's bookkeeping) and the arguments of the commands that
import the engine. The handlers live in app/cli/look.py, beyond.py, training.py and tools.py.

`train`, `finetune`, `distill` and `export-onnx` import the engine (torch, ~2 s) to declare their choices,
so their arguments are declared only when that command runs.
"""
from __future__ import annotations

import argparse

from app.cli import beyond, look, tools, training

MODEL_HELP = "a path (model directory or .onnx file) or a name from `lmscope models`"
OUT_HELP = "output directory (runs/NAME makes it appear in `lmscope models`)"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `error: ...` and status 2 like every other user error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


# ---------------------------------------------------------------------------------------------------
# Groups of arguments several commands take


def add_input(sp: argparse.ArgumentParser, name: str = "text", what: str = "the input text", pair: bool = False) -> None:
    """The text a command reads: an argument (`-` for stdin) or --file; with `pair`, a second sentence."""
    sp.add_argument(name, nargs="?", help=f"{what}, or - for stdin")
    sp.add_argument("--file", help=f"read {what} from this UTF-8 file")
    if pair:
        sp.add_argument("--pair", help="second sentence (NSP / sentence order)")


def add_states(sp: argparse.ArgumentParser, max_tokens: int, tokens_help: str | None = None) -> None:
    """The hidden states a command reads: which text set, which layer, how many tokens at most."""
    sp.add_argument("--data", default="english", help="toyworld, english, pydoc, or a file (one text per line, "
                    "optionally label<TAB>text)")
    sp.add_argument("--layer", type=int, default=None, help="hidden-state row, 0 = embeddings (default: the last)")
    sp.add_argument("--max-tokens", type=int, default=max_tokens, help=tokens_help)


def add_run(p: argparse.ArgumentParser, checkpoint_every: int | None = None, eval_every: int | None = None) -> None:
    """What every training command takes: the output folder, how often to checkpoint and evaluate, the seed,
    threads, --resume and --quiet."""
    p.add_argument("--out", required=True, help=OUT_HELP)
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    p.add_argument("--eval-every", type=int, default=eval_every)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--quiet", action="store_true")


# ---------------------------------------------------------------------------------------------------
# Arguments of the commands that import the engine to declare them (declared only when that command runs)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """`lmscope train` (and `torchrun ... -m app.cli train`): imports torch to list the architectures and presets."""
    from model.train.config import ARCHS
    from model.train.presets import PRESETS

    p.add_argument("arch", choices=ARCHS)
    p.add_argument("--corpus", default="toyworld", help="a .txt/.jsonl file, or toyworld / pydoc (built in)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    for name, typ in (("steps", int), ("batch-size", int), ("seq-len", int), ("lr", float), ("warmup", int),
                      ("layers", int), ("heads", int), ("hidden", int), ("vocab-size", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="default: the preset's")
    add_run(p, checkpoint_every=500, eval_every=250)
    p.add_argument("--keep-last", type=int, default=5)
    p.add_argument("--mlm-probability", type=float, default=None, help="masked-LM selection rate (default: the preset's, 0.3)")
    p.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    p.add_argument("--whole-word", action="store_true", help="whole-word masking")
    p.add_argument("--char-cnn", action="store_true", help="ELMo: token vectors from their characters (char-CNN)")
    p.add_argument("--static-masking", dest="dynamic_masking", action="store_const", const=False, default=None)
    p.add_argument("--dynamic-masking", dest="dynamic_masking", action="store_const", const=True)
    p.add_argument("--bf16", dest="bf16", action="store_const", const=True, default=None,
                   help="bfloat16 autocast for matmuls (default: on when hidden >= 128 and a short matmul measurement finds bf16 faster on this CPU)")
    p.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="train in float32 throughout")


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    from model.train.labelled import BUILTIN_TASKS

    p.add_argument("base", help="the model to start from (a path or a name from `lmscope models`)")
    p.add_argument("--data", required=True, help=f"a .csv/.jsonl file (text, label), or a built-in task: "
                   f"{', '.join(BUILTIN_TASKS)}; with --task lm a .txt/.jsonl corpus, toyworld or pydoc")
    p.add_argument("--task", choices=["classify", "lm"], default="classify")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--steps", type=int, default=None, help="default: --epochs passes over the training examples")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--freeze-layers", type=int, default=0, help="freeze the embeddings and the lowest K layers")
    p.add_argument("--head-only", action="store_true", help="train only the new head (a linear probe of the base)")
    add_run(p)


def add_distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", help="the model to distill (a path or a name from `lmscope models`)")
    p.add_argument("--corpus", default="toyworld", help="a .txt/.jsonl file, or toyworld / pydoc")
    p.add_argument("--student", default=None, help="start the student from this model (same tokenizer) instead of "
                   "a fresh smaller one")
    for name in ("layers", "hidden", "heads"):
        p.add_argument(f"--{name}", type=int, default=None, help="default: half the teacher's")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's soft targets (0: no teacher)")
    add_run(p)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    from model.onnx.export import OPSETS

    p.add_argument("model", help="a model directory or a name from `lmscope models`")
    p.add_argument("--out", required=True, help="the .onnx file to write (tokenizer and metadata go beside it)")
    p.add_argument("--opset", type=int, default=17, help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} (default 17)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the file; computes in float32)")
    p.add_argument("--no-decoder", dest="decoder", action="store_false",
                   help="causal LMs: skip FILE.decoder.onnx, the key/value-cache generation graph (a second copy of the weights)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


# ---------------------------------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI. `command`: the subcommand about to run -- `train`, `finetune`, `distill` and
    `export-onnx` import the engine to declare their own arguments, so they are declared only when that
    command runs."""
    p = Parser(prog="lmscope", description="Look inside BERT- and GPT-2-style language models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def cmd(name: str, help_: str, func, model: bool = True, text: str | None = None, what: str = "the input text",
            pair: bool = False, dtype: bool = False) -> argparse.ArgumentParser:
        """`lmscope NAME`, running `func`: with `model`, the model to read and --json; with `text`, the input
        text (`what`) under that name (`pair`: and a second sentence); with `dtype`, --dtype."""
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=func)
        if model:
            sp.add_argument("model", help=MODEL_HELP)
            sp.add_argument("--json", action="store_true", help="print JSON")
        if text:
            add_input(sp, text, what, pair=pair)
        if dtype:
            sp.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                            help="load the weights in this dtype (bfloat16: half the memory, for a model that does not fit)")
        return sp

    sp = cmd("models", "list models found on this disk", look.cmd_models, model=False)
    sp.add_argument("--json", action="store_true")
    cmd("tokenize", "show how the model's tokenizer cuts a text", look.cmd_tokenize, text="text", pair=True)

    sp = cmd("inspect", "tokens, one head's attention map, summaries and predictions", look.cmd_inspect, text="text",
             pair=True, dtype=True)
    sp.add_argument("--layer", type=int, default=None, help="default 0")
    sp.add_argument("--head", type=int, default=None, help="default 0")
    sp.add_argument("--top-k", type=int, default=5)
    sp.add_argument("--pll", action="store_true", help="masked LM: pseudo-log-likelihood per token")
    sp.add_argument("--logit-lens", action="store_true", help="each layer's top predictions")

    sp = cmd("fill-mask", "predict [MASK] / <mask> tokens", look.cmd_fill_mask, text="text", pair=True, dtype=True)
    sp.add_argument("--top-k", type=int, default=5)

    sp = cmd("generate", "continue a prompt (greedy, sampling or beam search)", look.cmd_generate, text="prompt",
             what="the prompt", dtype=True)
    sp.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="greedy")
    for name, typ, default, help_ in (("temperature", float, 1.0, None), ("top-k", int, 0, "0 = off"),
                                      ("top-p", float, 1.0, None), ("typical-p", float, 1.0, None),
                                      ("min-p", float, 0.0, None), ("repetition-penalty", float, 1.0, None),
                                      ("num-beams", int, 4, None),
                                      ("length-penalty", float, 1.0, "beam: score / length**penalty"),
                                      ("max-new-tokens", int, 20, None), ("seed", int, 0, None)):
        sp.add_argument(f"--{name}", type=typ, default=default, help=help_)
    sp.add_argument("--early-stopping", choices=["false", "true", "never"], default="false",
                    help="beam: stop when num-beams hypotheses are done (true), as transformers' early_stopping")

    sp = cmd("agreement", "subject-verb agreement per probe kind (no attractor / same / opposite number)",
             beyond.cmd_agreement)
    sp.add_argument("--n", type=int, default=500, help="number of toy-world probes (1-5000)")
    sp.add_argument("--seed", type=int, default=4242, help="which probes (any seed but the training corpus's 0)")
    sp.add_argument("--examples", type=int, default=2, help="example probes shown per kind")

    sp = cmd("attribute", "saliency: each input token's share of one prediction (Captum)", beyond.cmd_attribute,
             text="text")
    sp.add_argument("--target-position", type=int, default=None, help="default: the first mask / the last token")
    sp.add_argument("--target-token", default=None, help="a vocabulary piece or id (default: the top prediction)")
    sp.add_argument("--method", choices=["grad_x_input", "integrated_gradients"], default="integrated_gradients")
    sp.add_argument("--steps", type=int, default=50, help="integrated gradients: integration points")

    sp = cmd("neurons", "feed-forward neuron activations factorized by NMF (Ecco)", beyond.cmd_neurons, text="text")
    sp.add_argument("--layer", type=int, default=None, help="one layer (default: all, side by side)")
    sp.add_argument("-k", type=int, default=5, help="components")

    sp = cmd("project", "2-D PCA / UMAP of the hidden states of a text collection's tokens", beyond.cmd_project)
    add_states(sp, max_tokens=5000)
    sp.add_argument("--method", choices=["pca", "umap"], default="pca")

    sp = cmd("search", "corpus search: tokens whose hidden states are nearest to one token's", beyond.cmd_search,
             text="text", what="the query text")
    sp.add_argument("--token", type=int, required=True, help="index of the query token (see `lmscope tokenize`)")
    add_states(sp, max_tokens=20000, tokens_help="corpus tokens indexed (index kept under runs/search/)")
    sp.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    sp.add_argument("-k", type=int, default=10, help="nearest tokens listed")

    sp = cmd("app", "start the Streamlit app (headless)", tools.cmd_app, model=False)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8501)

    for name, help_, add, func in (
        ("train", "train a small BERT / RoBERTa / ALBERT / GPT-2 / ELMo", add_train_arguments, training.cmd_train),
        ("finetune", "fine-tune a model: a sequence classifier, or more LM training on new text", add_finetune_arguments,
         training.cmd_finetune),
        ("distill", "distill a smaller student from a teacher model", add_distill_arguments, training.cmd_distill),
        ("export-onnx", "export a model to ONNX with its attention maps, checked against torch", add_export_arguments,
         tools.cmd_export_onnx),
    ):  # their arguments import the engine: declared only for the command about to run
        sp = cmd(name, help_, func, model=False)
        try:
            if command == name:
                add(sp)
        except ImportError:  # the engine is not installed in this build: argparse says what it does not know
            pass

    cmd("classify", "a fine-tuned classifier's labels with probabilities", training.cmd_classify, text="text")

    sp = cmd("bench", "run the benchmarks against baselines measured in the same run", tools.cmd_bench, model=False)
    sp.add_argument("--full", action="store_true", help="the long version")

    sp = cmd("demo-models", "train the demo models shipped in assets/models", training.cmd_demo_models, model=False)
    sp.add_argument("--out", default="assets/models")
    sp.add_argument("--only", nargs="*", help="demo models to build: gpt2 bert roberta albert elmo (toy world), en-bert en-gpt2 (real English); default: all")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (e.g. 0.05 for a smoke test)")
    return p
