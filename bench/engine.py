"""Engine benchmarks: each figure is ours against a baseline measured in the same run.

    python -m bench.engine            # short
    lmscope bench                      # every benchmark (see bench/run.py)

Models are random BERTs built from configs (no downloads); speed does not depend on the weights.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Figure:
    """One printed line: name, our value, the baseline's, ratio (ours / baseline), target, pass."""

    name: str
    ours: float
    baseline: float
    unit: str
    target: str
    passed: bool
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.name:<44} ours {self.ours:>10.3f} {self.unit:<3} baseline {self.baseline:>10.3f} {self.unit:<3} "
                f"ratio {self.ratio:>7.3f}  target {self.target:<18} {verdict}  {self.note}")


def build_bert(out: Path, layers=12, heads=12, hidden=768, positions=1024, vocab=30522) -> Path:
    """A random BERT-base-shaped masked LM with a small trained WordPiece tokenizer, saved to `out`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from model.train.tokenizer import train_tokenizer

    torch.manual_seed(0)
    words = "the quick brown fox jumps over a lazy dog while students watch attention heads".split()
    fast = train_tokenizer("bert", [" ".join(words)] * 10, vocab_size=200, max_length=positions)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=positions)
    BertForMaskedLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def text_of(n_tokens: int) -> str:
    """A text that the bench tokenizer cuts into exactly n_tokens - 2 word tokens (+ [CLS] [SEP])."""
    words = "the quick brown fox jumps over a lazy dog while students watch attention heads".split()
    return " ".join(words[i % len(words)] for i in range(n_tokens - 2))


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def bench_inspection(model_dir: Path, n_tokens: int = 128, repeat: int = 10) -> Figure:
    """inspect() (tokenize + forward + attention summaries + predictions) vs a bare eager forward with
    output_attentions, single-threaded."""
    import torch
    from transformers import BertForMaskedLM

    from model.inspect import inspect
    from model.load import load_model

    torch.set_num_threads(1)
    m = load_model(model_dir)
    ref = BertForMaskedLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    text = text_of(n_tokens).replace("fox", "[MASK]", 1)
    ids = torch.tensor([m.tokenizer(text)["input_ids"]])
    assert ids.shape[1] == n_tokens, ids.shape

    def baseline():
        with torch.inference_mode():
            ref(input_ids=ids, output_attentions=True)

    ours = _median_ms(lambda: inspect(m, text), repeat)
    base = _median_ms(baseline, repeat)
    return Figure(f"inspection {n_tokens} tok, 12x12, 1 thread", ours, base, "ms", "<= 1.15x", ours <= 1.15 * base,
                  "baseline: transformers eager forward, output_attentions=True")


_MEM_CHILD = r"""
import ctypes, gc, json, resource, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
mode, model_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
from bench.engine import text_of
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
if mode == "ours":
    from model.load import load_model
    from model.inspect import inspect
    m = load_model(model_dir)
    inspect(m, "warm up")
    run = lambda: inspect(m, text_of(n))
else:
    from transformers import AutoTokenizer, BertForMaskedLM
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = BertForMaskedLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.tensor([tok(text_of(n))["input_ids"]])
    def run():
        with torch.inference_mode():
            return ref(input_ids=ids, output_attentions=True)
    with torch.inference_mode():
        ref(input_ids=ids[:, :4], output_attentions=True)
gc.collect(); ctypes.CDLL("libc.so.6").malloc_trim(0)
before = rss()
# ru_maxrss only grows: reset it by measuring peak through a sampling thread instead
import threading
peak = [before]; stop = [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], rss())
t = threading.Thread(target=sample, daemon=True); t.start()
out = run()
stop[0] = True; t.join()
peak[0] = max(peak[0], rss())
print(json.dumps({{"extra_mb": (peak[0] - before) / 2**20}}))
"""


def bench_memory(model_dir: Path, n_tokens: int = 1024) -> Figure:
    """Extra resident memory (sampled peak) to inspect 1024 tokens on a 12 x 12 model, each in a fresh
    process; baseline: transformers' eager forward with output_attentions (all maps in fp32)."""
    root = str(Path(__file__).resolve().parent.parent)
    code = _MEM_CHILD.format(root=root)

    def child(mode):
        p = subprocess.run([sys.executable, "-c", code, mode, str(model_dir), str(n_tokens)],
                           capture_output=True, text=True, timeout=600)
        if p.returncode:
            raise RuntimeError(p.stderr[-2000:])
        return json.loads(p.stdout.strip().splitlines()[-1])["extra_mb"]

    ours, base = child("ours"), child("eager")
    return Figure(f"extra memory, inspect {n_tokens} tok, 12x12", ours, base, "MB", "<= 160 MB", ours <= 160,
                  "baseline: eager forward with output_attentions; all maps fp32 = 576 MiB")


def bench_attention_payload(model_dir: Path, n_tokens: int = 512, bertviz_views=("head_view",)) -> list[Figure]:
    """Bytes and time to produce the attention view's data for one layer/head (ours: the fp16 head map
    plus the (L, H) summary grid) vs bertviz's HTML for the same model and text."""
    import torch
    from bertviz import head_view
    from transformers import BertForMaskedLM

    from model.inspect import inspect
    from model.load import load_model

    m = load_model(model_dir)
    text = text_of(n_tokens)

    def ours():
        r = inspect(m, text)
        payload = r.attention(3, 5).astype(np.float16).tobytes() + r.head_summary.entropy.astype(np.float16).tobytes()
        labels = json.dumps([t.text for t in r.tokens]).encode()
        return len(payload) + len(labels)

    t = time.perf_counter()
    ours_bytes = ours()
    ours_s = time.perf_counter() - t

    ref = BertForMaskedLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    ids = torch.tensor([m.tokenizer(text)["input_ids"]])
    t = time.perf_counter()
    with torch.inference_mode():
        att = ref(input_ids=ids, output_attentions=True).attentions
    tokens = m.tokenizer.convert_ids_to_tokens(ids[0])
    html_bytes = 0
    for view in bertviz_views:
        html = head_view(att, tokens, html_action="return")
        html_bytes += len(html.data.encode())
        del html
    bv_s = time.perf_counter() - t
    return [
        Figure(f"attention view bytes, {n_tokens} tok, 12x12", ours_bytes / 1e6, html_bytes / 1e6, "MB",
               "<= 1/200 and 4 MB", ours_bytes * 200 <= html_bytes and ours_bytes <= 4e6,
               f"baseline: bertviz {'+'.join(bertviz_views)} HTML (engine payload, not yet measured in the browser)"),
        Figure(f"attention view data time, {n_tokens} tok", ours_s, bv_s, "s", "<= 1/20", ours_s * 20 <= bv_s,
               "baseline: eager forward + bertviz HTML"),
    ]


def bench_threads(model_dir: Path, lengths=(32, 128, 512), repeat: int = 8) -> list[Figure]:
    """inspect() with two torch threads against one, per input length: the measurement behind the app's
    thread setting (model.load.APP_TORCH_THREADS). Calls alternate so background load hits both alike."""
    import torch

    from model.inspect import inspect
    from model.load import load_model

    m = load_model(model_dir)
    figs = []
    old = torch.get_num_threads()
    try:
        for n in lengths:
            text = text_of(n)
            times: dict[int, list[float]] = {1: [], 2: []}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                inspect(m, text)  # warm-up
            for _ in range(repeat):
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    t = time.perf_counter()
                    inspect(m, text)
                    times[threads].append(time.perf_counter() - t)
            two, one = (float(np.median(times[k]) * 1000) for k in (2, 1))
            figs.append(Figure(f"inspection {n} tok, 12x12, 2 threads vs 1", two, one, "ms", "(reported)", True,
                               "baseline: the same call on 1 thread"))
    finally:
        torch.set_num_threads(old)
    return figs


def run(full: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory() as d:
        model_dir = build_bert(Path(d) / "bert12x12")
        figs = [bench_inspection(model_dir, 128, repeat=20 if full else 8)]
        figs += bench_threads(model_dir, repeat=10 if full else 4)
        figs += bench_attention_payload(model_dir, 512, ("head_view", "model_view") if full else ("head_view",))
        figs.append(bench_memory(model_dir, 1024))
    return figs


if __name__ == "__main__":
    for f in run(full="--full" in sys.argv):
        print(f.line(), flush=True)
