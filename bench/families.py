"""A modern decoder at real size (`lmscope bench --full` only): a random model shaped like Qwen2-0.5B (24 layers,
14 query / 2 key-value heads, hidden 896, vocabulary 151,936; ~494 M parameters, 2 GB in float32), built here
from its config with a small byte-level BPE tokenizer, inspected at 512 tokens.

    python -m bench.families --full

Figures (each against a baseline measured in the same run, in a child process so memory is its own):
    inspection time           lmscope's inspect() with next-token predictions at every position (as the
                              CLI and the Generation page call it; the Attention page skips them) vs
                              transformers' eager forward with output_attentions (which computes every logit too)
    peak extra memory         resident memory above the loaded model during one inspect() (sampled every ms)
    attention page bytes      websocket frames, navigation -> page drawn (Debian chromium), vs the eager maps' bytes
    typed -> heatmap          a new 512-token text typed into the open page -> its heatmap drawn, vs the eager forward
                              (the page draws layer 0 from a forward stopped after it; the rest of the page follows)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from bench.engine import Figure

QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151_936, max_position_embeddings=1024, tie_word_embeddings=True)
TOKENS = 512
ROOT = Path(__file__).resolve().parents[1]


def build_qwen2(out: Path, **overrides) -> Path:
    """The random Qwen2-0.5B-shaped causal LM (overrides: smaller shapes for tests), saved to `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from model.train.tokenizer import train_tokenizer

    torch.manual_seed(0)
    words = "the quick brown fox jumps over a lazy dog while students watch attention heads".split()
    tok = train_tokenizer("gpt2", [" ".join(words)] * 10, vocab_size=300, max_length=1024)
    cfg = AutoConfig.for_model("qwen2", **{**QWEN2_05B, **overrides}, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
from bench.peak_memory import time_and_peak
torch.set_num_threads(1)
mode, model_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
words = "the quick brown fox jumps over a lazy dog while students watch attention heads".split()
if mode == "ours":
    from model.load import load_model
    from model.inspect import inspect
    m = load_model(model_dir)
    ids = None
    text = " ".join(words[i % len(words)] for i in range(n))
    enc = m.tokenizer(text)["input_ids"]
    text = m.tokenizer.decode(enc[:n])
    inspect(m, "warm up", summaries=False)
    run = lambda: inspect(m, text, summaries=False)  # with predictions, like the baseline's logits (statistics: off)
else:
    from transformers import AutoTokenizer, AutoModelForCausalLM
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    text = " ".join(words[i % len(words)] for i in range(n))
    ids = torch.tensor([tok(text)["input_ids"][:n]])
    def run():
        with torch.inference_mode():
            return ref(input_ids=ids, output_attentions=True)
    with torch.inference_mode():
        ref(input_ids=ids[:, :4], output_attentions=True)
times, extra_mb = time_and_peak(run, repeat=3, interval_s=0.001)
times.sort()
print(json.dumps({{"seconds": times[1], "extra_mb": extra_mb}}))
"""


def _child(mode: str, model_dir: Path, n: int) -> dict:
    code = _CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, mode, str(model_dir), str(n)], capture_output=True, text=True,
                         check=True, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                          "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def attention_page(br, tmp: Path, n_tokens: int = TOKENS) -> list[Figure]:
    """The attention page on the Qwen2-0.5B-shaped model at n_tokens: websocket bytes and the heatmap drawn after a new text
    is typed into the open page (the model already loaded). Baseline: the same model's eager forward with
    output_attentions=True (the arrays a tool that sends every map would have to send: their fp32 bytes)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.browser import (ALL_DRAWN, HEATMAP_DRAWN, exception_shown, lmscope_argv, load_note, serve,
                               typed_heatmap_seconds)

    roots = tmp / "models"
    model_dir = build_qwen2(roots / "qwen2-0.5b-shape")
    tok = AutoTokenizer.from_pretrained(model_dir)
    words = "the quick brown fox jumps over a lazy dog while students watch attention heads".split()
    ids = tok(" ".join(words[i % len(words)] for i in range(n_tokens)))["input_ids"][:n_tokens]
    text, other = tok.decode(ids), tok.decode(list(reversed(ids)))
    n_text = len(tok(text)["input_ids"])
    ref = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.inference_mode():
        t = time.perf_counter()
        out = ref(input_ids=torch.tensor([tok(text)["input_ids"]]), output_attentions=True)
        eager_s = time.perf_counter() - t
    maps_bytes = sum(a.numel() * 4 for a in out.attentions)
    del out, ref
    env = {"LMSCOPE_DEMO_MODELS": str(tmp / "no-demo"), "LMSCOPE_RUNS": str(tmp / "runs"),
           "LMSCOPE_MODEL_ROOTS": str(roots)}
    ctx = br.context()
    with serve(lmscope_argv, env) as (url, _):
        page = ctx.new_page()
        received = [0]
        page.on("websocket", lambda ws: ws.on("framereceived",
                                              lambda payload: received.__setitem__(0, received[0] + len(payload))))
        page.goto(f"{url}/attention?" + urllib.parse.urlencode({"model": str(model_dir), "text": text}))
        page.wait_for_function(HEATMAP_DRAWN, arg=["Layer 0, head 0:", n_text], polling="raf", timeout=600_000)
        page.wait_for_function(ALL_DRAWN, arg=3, polling=50, timeout=600_000)
        time.sleep(0.3)  # frames already in flight
        ours_bytes = received[0]
        typed_s = typed_heatmap_seconds(page, other, len(tok(other)["input_ids"]), 600_000)
        bad = exception_shown(page)
    ctx.close()
    if bad:
        raise RuntimeError("the attention page showed an exception")
    label = f"{n_text} tok, Qwen2-0.5B shape"
    return [
        Figure(f"attention page ws bytes, {label}", ours_bytes / 1e6, maps_bytes / 1e6, "MB", "<= 4 MB",
               ours_bytes <= 4e6, ours_does="websocket frames received, navigation -> page fully drawn",
               baseline_does="the eager forward's attention maps (output_attentions=True), fp32 bytes"),
        Figure(f"attention page, typed, {label}", typed_s, eager_s, "s", "<= 3 s", typed_s <= 3.0,
               ours_does="a new text typed into the open page (model loaded) -> its heatmap drawn (layer 0, from "
                         "a forward stopped after layer 0; the rest of the page is drawn after the whole inspection)",
               baseline_does="transformers eager forward with output_attentions=True, same model and length",
               note=load_note()),
    ]


def run(full: bool = False, **overrides) -> list[Figure]:
    if not full:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        d = build_qwen2(Path(tmp) / "qwen2", **overrides)
        ours, base = _child("ours", d, TOKENS), _child("eager", d, TOKENS)
    label = "Qwen2-0.5B shape" if not overrides else "Qwen2 shape (reduced)"
    return _engine_figures(ours, base, label) + ([] if overrides else _browser_figures())


def _browser_figures() -> list[Figure]:
    from bench.browser import Browser, unavailable

    why = unavailable()
    if why:
        print(f"{'bench.families (attention page)':<44} skipped: {why}", flush=True)
        return []
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lmscope-bench-families-") as d, sync_playwright() as pw:
        br = Browser(pw)
        try:
            return attention_page(br, Path(d))
        finally:
            br.close()


def _engine_figures(ours: dict, base: dict, label: str) -> list[Figure]:
    return [
        Figure(f"inspection {TOKENS} tok, {label}, 1 thread", ours["seconds"] * 1000, base["seconds"] * 1000, "ms",
               "<= 1.15x", ours["seconds"] <= 1.15 * base["seconds"],
               ours_does="lmscope inspect: forward, every map recorded, next-token top-k and surprisal at "
                         "every position (per-head statistics off; the Attention page also skips the predictions)",
               baseline_does="transformers eager forward, output_attentions=True (all maps, all logits)"),
        Figure(f"peak extra memory, inspect {TOKENS} tok, {label}", ours["extra_mb"], base["extra_mb"], "MB",
               "<= 300 MB", ours["extra_mb"] <= 300, ours_does="peak memory of inspect beyond the loaded weights",
               baseline_does="the eager forward's own extra memory (output_attentions=True)"),
    ]


if __name__ == "__main__":
    for fig in run(full="--full" in sys.argv):
        print(fig.line(), flush=True)
