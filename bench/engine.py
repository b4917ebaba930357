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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


NO_TARGET = "(none)"


@dataclass
class Figure:
    """One printed line: our value and a baseline's measured in the same run, the ratio (ours / baseline),
    the target and the verdict. `passed` None means the row has no target: it prints INFO (never PASS) and
    cannot fail. `ours_does` / `baseline_does` say in a few words what each side runs; both are printed on
    the line (a ratio means nothing without them) and neither may be empty."""

    name: str
    ours: float
    baseline: float
    unit: str
    target: str
    passed: bool | None
    ours_does: str = field(kw_only=True)
    baseline_does: str = field(kw_only=True)
    note: str = field(default="", kw_only=True)

    def __post_init__(self):
        if not self.ours_does.strip() or not self.baseline_does.strip():
            raise ValueError(f"{self.name}: say what both sides do (ours_does, baseline_does)")
        if self.passed is None:
            self.target = NO_TARGET

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    @property
    def verdict(self) -> str:
        return "INFO" if self.passed is None else "PASS" if self.passed else "FAIL"

    @property
    def missed(self) -> bool:
        """A target that was not met (INFO rows never miss)."""
        return self.passed is False

    def line(self) -> str:
        return (f"{self.name:<44} ours {self.ours:>10.3f} {self.unit:<3} baseline {self.baseline:>10.3f} {self.unit:<3} "
                f"ratio {self.ratio:>7.3f}  target {self.target:<18} {self.verdict}  "
                f"ours: {self.ours_does} | baseline: {self.baseline_does}" + (f" | {self.note}" if self.note else ""))


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
                  ours_does="inspect(): tokenize, forward, every head's attention summary, MLM predictions",
                  baseline_does="transformers eager forward with output_attentions=True on the same ids")


_MEM_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
mode, model_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
from bench.engine import text_of
from bench.peak_memory import time_and_peak
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
_, extra_mb = time_and_peak(run)  # ru_maxrss only grows: a sampling thread measures this run's peak
print(json.dumps({{"extra_mb": extra_mb}}))
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
                  ours_does="inspect() of the text in a fresh process (sampled peak RSS)",
                  baseline_does="eager forward with output_attentions in a fresh process (all maps fp32 = 576 MiB)")


# The bertviz view that does what lmscope's attention page does: pick a layer and a head, see where each
# token attends (bertviz ships every layer's every head in its HTML; lmscope sends one head's map and a
# summary per head). bertviz's model_view (every head's map as a thumbnail grid) would be a second, larger
# page: it is not added to this one.
BERTVIZ_VIEW = "head_view"


def _check_view(view: str) -> None:
    if view not in ("head_view", "model_view"):
        raise ValueError(f"unknown bertviz view {view!r}")


def bertviz_html_bytes(att, tokens: list[str], view: str = BERTVIZ_VIEW) -> int:
    """Bytes of bertviz's HTML for `view` ("head_view" or "model_view"), that very function called once."""
    import bertviz

    _check_view(view)
    html = getattr(bertviz, view)(att, tokens, html_action="return")
    return len(html.data.encode())


def bench_attention_payload(model_dir: Path, n_tokens: int = 512, view: str = BERTVIZ_VIEW) -> list[Figure]:
    """Bytes and time to produce the attention view's data for one layer/head (ours: the fp16 head map
    plus the (L, H) summary grid) vs bertviz's `view` HTML for the same model and text."""
    _check_view(view)
    import torch
    from transformers import BertForMaskedLM

    from model.inspect import inspect
    from model.load import load_model

    m = load_model(model_dir)
    text = text_of(n_tokens)

    def ours():
        r = inspect(m, text)
        head_map = r.attention(min(3, r.num_layers - 1), min(5, r.num_heads - 1))  # (N, N)
        payload = head_map.astype(np.float16).tobytes() + r.head_summary.entropy.astype(np.float16).tobytes()
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
    html_bytes = bertviz_html_bytes(att, tokens, view)
    bv_s = time.perf_counter() - t
    ours_does = "inspect() + one head's map (fp16) + the (L, H) head summary + token labels"
    return [
        Figure(f"attention view bytes, {n_tokens} tok, 12x12", ours_bytes / 1e6, html_bytes / 1e6, "MB",
               "<= 1/200 and 4 MB", ours_bytes * 200 <= html_bytes and ours_bytes <= 4e6, ours_does=ours_does,
               baseline_does=f"bertviz {view} HTML, same model and text (engine payload; browser: bench.browser)"),
        Figure(f"attention view data time, {n_tokens} tok", ours_s, bv_s, "s", "<= 1/20", ours_s * 20 <= bv_s,
               ours_does=ours_does, baseline_does=f"eager forward with attentions + bertviz {view} HTML"),
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
            figs.append(Figure(f"inspection {n} tok, 12x12, 2 threads vs 1", two, one, "ms", NO_TARGET, None,
                               ours_does="inspect() on 2 torch threads", baseline_does="the same call on 1 thread"))
    finally:
        torch.set_num_threads(old)
    return figs


def run(full: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory() as d:
        model_dir = build_bert(Path(d) / "bert12x12")
        figs = [bench_inspection(model_dir, 128, repeat=20 if full else 8)]
        figs += bench_threads(model_dir, repeat=10 if full else 4)
        figs += bench_attention_payload(model_dir, 512)
        figs.append(bench_memory(model_dir, 1024))
    return figs


if __name__ == "__main__":
    for f in run(full="--full" in sys.argv):
        print(f.line(), flush=True)
