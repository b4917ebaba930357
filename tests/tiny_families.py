"""Tiny random checkpoints of the model families beyond the seed six, built the way a user's would be:
`AutoConfig.for_model(...)` + the Auto class of its task + `save_pretrained`, with a tokenizer trained here
(byte-level BPE for the decoders, WordPiece or Unigram/SentencePiece for the encoders). Nothing from a hub.

Every decoder reads at least WINDOW + a few tokens past its sliding / local window (the tests go past it).
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

from model.train.tokenizer import train_tokenizer
from tiny_models import SENTENCES

WINDOW = 6  # sliding / local attention window of the families that have one
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)

# name -> (model_type, task, tokenizer kind (model.train.tokenizer), config overrides)
FAMILIES: dict[str, tuple[str, str, str, dict]] = {
    "llama": ("llama", "causal", "gpt2", dict(num_key_value_heads=2)),
    "qwen2": ("qwen2", "causal", "gpt2", dict(num_key_value_heads=2, use_sliding_window=True, sliding_window=WINDOW,
                                              max_window_layers=1, layer_types=["full_attention", "sliding_attention"])),
    "mistral": ("mistral", "causal", "gpt2", dict(num_key_value_heads=1, sliding_window=WINDOW)),
    "phi3": ("phi3", "causal", "gpt2", dict(num_key_value_heads=2, pad_token_id=0)),
    "gemma": ("gemma", "causal", "gpt2", dict(num_key_value_heads=1, head_dim=8)),
    "gpt-neo": ("gpt_neo", "causal", "gpt2", dict(attention_types=[[["global", "local"], 1]], window_size=WINDOW,
                                                  num_layers=2, num_heads=4)),
    "opt": ("opt", "causal", "gpt2", dict(ffn_dim=64, word_embed_proj_dim=32)),
    "electra": ("electra", "masked", "bert", dict(embedding_size=16)),
    "deberta-v2": ("deberta-v2", "masked", "albert", dict(relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                          position_buckets=8)),
    "xlm-roberta": ("xlm-roberta", "masked", "albert", dict(max_position_embeddings=66)),
    "modernbert": ("modernbert", "masked", "bert", dict(global_attn_every_n_layers=2, local_attention=WINDOW,
                                                        max_position_embeddings=64)),
}


def build_family(name: str, out: Path) -> Path:
    """Build and save one tiny random model of `name` (a key of FAMILIES) in out/name."""
    model_type, task, tok_kind, extra = FAMILIES[name]
    tok = train_tokenizer(tok_kind, SENTENCES, 200, max_length=SMALL["max_position_embeddings"] - 2)
    special = {f"{k}_id": getattr(tok, f"{k}_id") for k in ("pad_token", "bos_token", "eos_token")
               if getattr(tok, f"{k}_id", None) is not None}
    if model_type == "modernbert":
        special.update(cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                       eos_token_id=tok.sep_token_id)
    kw = dict(SMALL, vocab_size=len(tok), **{k: v for k, v in special.items()})
    kw.update(extra)
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, **kw)
    auto = AutoModelForCausalLM if task == "causal" else AutoModelForMaskedLM
    model = auto.from_config(cfg)
    path = out / name
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


NAMES = list(FAMILIES)


def assert_masks_match(r, logits: torch.Tensor, k: int, tol: float) -> None:
    """Every mask of inspection `r` predicts the top k of the model's own `logits` (seq, vocab), within `tol`."""
    assert r.masks
    for mp in r.masks:
        top = torch.softmax(logits[mp.position], -1).topk(k)
        assert [p.id for p in mp.predictions] == top.indices.tolist()
        torch.testing.assert_close(torch.tensor([p.prob for p in mp.predictions]), top.values, atol=tol, rtol=0)


def build_state_space(out: Path) -> Path:
    """A tiny random Mamba (a state-space model: no attention layers) in out/mamba."""
    tok = train_tokenizer("gpt2", SENTENCES, 200, max_length=62)
    cfg = AutoConfig.for_model("mamba", hidden_size=32, num_hidden_layers=2, vocab_size=len(tok), state_size=4,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out / "mamba")
    tok.save_pretrained(out / "mamba")
    return out / "mamba"


def build_huge(src: Path, out: Path, layers: int = 512, hidden: int = 8192) -> Path:
    """A copy of the tiny BERT `src` grown to `layers` x `hidden` with config.json and weights that agree
    (terabytes of float32), its safetensors file sparse: the header lists every tensor, the data is a
    hole the size of the data (no disk used; never read). For the load guard's "larger than free memory"."""
    import json
    import shutil

    from transformers import BertConfig, BertForMaskedLM

    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=64)
    (out / "config.json").write_text(json.dumps(cfg))
    one = BertConfig(**{**cfg, "num_hidden_layers": 1})
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in BertForMaskedLM(one).state_dict().items()}
    header, offset = {}, 0
    for k, shape in shapes.items():
        names = [k.replace("layer.0.", f"layer.{i}.") for i in range(layers)] if "layer.0." in k else [k]
        for n in names:
            size = 2 * int(torch.Size(shape).numel())  # F16
            header[n] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(out / "model.safetensors", "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + offset)  # a hole: sparse on every common file system
    return out
