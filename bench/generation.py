"""Generation with a cache against recomputing the prefix, measured in the same run.

Each backend's `Decoder` (the torch GPT-2's own past_key_values, an ONNX export's FILE.decoder.onnx, ELMo's
forward LSTM states) against the same model with its decoder switched off, where every step runs the whole
prefix again (`Backend.decoder` -> None, what generate() falls back to). Both must give the same tokens.

    python -m bench.generation            # the demo GPT-2 and the demo ELMo (a few seconds)
    python -m bench.generation --full     # also the demo GPT-2's ONNX export, and a random 12 x 768 GPT-2
                                          # (GPT-2 small's shape) on torch and exported

One thread (a classroom laptop core; the app's default for ONNX). Time: the median of REPEAT runs.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.engine import Figure

PROMPT = "in the garden there is a cat . the cat"
REPEAT = 3
STRATEGIES = (("greedy", {}), ("beam 3", {"strategy": "beam", "num_beams": 3}))


class Recompute:
    """The same loaded model with its decoder off: generate() recomputes the prefix at every step."""

    def __init__(self, loaded):
        self.info, self.tokenizer = loaded.info, loaded.tokenizer
        self.backend = _NoDecoder(loaded.backend)


class _NoDecoder:
    def __init__(self, backend):
        self._b = backend

    def decoder(self, input_ids):
        return None

    def __getattr__(self, name):
        return getattr(self._b, name)


def _seconds(loaded, tokens: int, kw: dict) -> tuple[float, list[int]]:
    from model.generate import generate

    times, out = [], None
    for _ in range(REPEAT):
        t = time.perf_counter()
        out = generate(loaded, PROMPT, max_new_tokens=tokens, **{"strategy": "greedy", **kw})
        times.append(time.perf_counter() - t)
    return statistics.median(times), list(out.tokens)


def bench_model(loaded, label: str, tokens: int) -> list[Figure]:
    """Greedy and beam-3 generation of `tokens` new tokens, with the decoder and recomputing."""
    if loaded.backend.decoder(loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"]) is None:
        return [Figure(f"generate {label}", float("nan"), float("nan"), "s", "same tokens, faster", False,
                       ours_does="generate() with the model's decoder (cache)", baseline_does="not run",
                       note="no decoder")]
    figs = []
    for name, kw in STRATEGIES:
        _seconds(loaded, 3, kw)  # warm-up: first-call allocations, the ONNX decoder session
        cached, a = _seconds(loaded, tokens, kw)
        plain, b = _seconds(Recompute(loaded), tokens, kw)
        same = a == b
        figs.append(Figure(f"generate {tokens} tok {name}, {label}", cached, plain, "s", "same tokens, faster",
                           same and cached < plain, ours_does=f"generate() {name} with the decoder's cache",
                           baseline_does=f"the same generate() {name}, same model, decoder off (prefix recomputed "
                                         "each step)",
                           note=f"speedup {plain / cached:.1f}x; same tokens: {'yes' if same else 'NO'}"))
    return figs


def _random_gpt2(out: Path) -> Path:
    """A random GPT-2 of GPT-2 small's shape (12 x 768, 1024 positions) with the demo GPT-2's tokenizer."""
    import torch
    import transformers as T

    from model.registry import ASSETS_MODELS

    tok = T.AutoTokenizer.from_pretrained(str(ASSETS_MODELS / "gpt2"))
    torch.manual_seed(0)
    m = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=len(tok), n_embd=768, n_layer=12, n_head=12, n_positions=1024,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    m.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def run(full: bool = False) -> list[Figure]:
    import torch
    import transformers

    from model.onnx.export import export_onnx
    from model.load import load_model

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    figs = []
    try:
        with tempfile.TemporaryDirectory() as d:
            sources = [("demo/gpt2", "demo GPT-2")]
            if full:
                sources.append((str(_random_gpt2(Path(d) / "gpt2-12x768")), "12x768 GPT-2"))
            for ref, label in sources:
                figs += bench_model(load_model(ref), f"{label} (torch)", 50)
                if full:  # an export takes a few seconds (the short run stays under 5 minutes in all)
                    onnx = export_onnx(ref, Path(d) / label.replace(" ", "-") / "model.onnx").path
                    figs += bench_model(load_model(onnx), f"{label} (onnx)", 50)
            figs += bench_model(load_model("demo/elmo"), "demo ELMo", 100)
    finally:
        torch.set_num_threads(threads)
    return figs


if __name__ == "__main__":
    for f in run(full="--full" in sys.argv):
        print(f.line(), flush=True)
