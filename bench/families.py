"""A modern decoder at real size (`lmscope bench --full` only): a random model shaped like Qwen2-0.5B (24 layers,
14 query / 2 key-value heads, hidden 896, vocabulary 151,936; ~494 M parameters, 2 GB in float32), built here
from its config with a small byte-level BPE tokenizer, inspected at 512 tokens.

    python -m bench.families --full

Figures (each against a baseline measured in the same run, in a child process so memory is its own):
    inspection time           lmscope's inspect() as the Attention page calls it vs transformers' eager
                              forward with output_attentions
    peak extra memory         resident memory above the loaded model during one inspect() (sampled every ms)
The attention page's websocket bytes and heatmap time at this size are browser figures (bench.browser).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
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
    run = lambda: inspect(m, text, summaries=False)  # as the Attention page calls it (statistics: when shown)
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


def run(full: bool = False, **overrides) -> list[Figure]:
    if not full:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        d = build_qwen2(Path(tmp) / "qwen2", **overrides)
        ours, base = _child("ours", d, TOKENS), _child("eager", d, TOKENS)
    label = "Qwen2-0.5B shape" if not overrides else "Qwen2 shape (reduced)"
    return [
        Figure(f"inspection {TOKENS} tok, {label}, 1 thread", ours["seconds"] * 1000, base["seconds"] * 1000, "ms",
               "<= 1.15x", ours["seconds"] <= 1.15 * base["seconds"],
               ours_does="lmscope inspect as the Attention page calls it: forward, every map recorded, "
                         "next-token top-k and surprisal at every position (per-head statistics off: computed "
                         "when that panel is shown)",
               baseline_does="transformers eager forward, output_attentions=True (all maps, all logits)"),
        Figure(f"peak extra memory, inspect {TOKENS} tok, {label}", ours["extra_mb"], base["extra_mb"], "MB",
               "<= 300 MB", ours["extra_mb"] <= 300, ours_does="peak memory of inspect beyond the loaded weights",
               baseline_does="the eager forward's own extra memory (output_attentions=True)"),
    ]


if __name__ == "__main__":
    for fig in run(full="--full" in sys.argv):
        print(fig.line(), flush=True)
