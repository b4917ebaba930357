"""Tiny random models of every supported architecture, saved with `save_pretrained` (safetensors).

Built from configs and tokenizers trained here on a few sentences, so tests never touch a hub.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AlbertConfig,
    AlbertForPreTraining,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForMaskedLM,
)

from model.train.tokenizer import train_tokenizer

SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a student types a sentence and sees how each tokenizer cuts it.",
    "the dogs near the cat run quickly; the cat near the dogs sleeps.",
    "attention heads look at other tokens in the sentence.",
    "hello world, this is lmscope! unbelievable tokenization happens here.",
] * 20

SMALL = dict(hidden=32, layers=2, heads=4, inter=64, positions=64)


def _tok(arch: str, vocab: int, positions: int):
    return train_tokenizer(arch, SENTENCES, vocab, max_length=positions - (2 if arch == "roberta" else 0))


def _bert_config(tok, positions: int, **kw) -> BertConfig:
    s = dict(SMALL, positions=positions)
    return BertConfig(vocab_size=len(tok), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], intermediate_size=s["inter"], max_position_embeddings=s["positions"],
                      pad_token_id=tok.pad_token_id, **kw)


def build(arch: str, out: Path, positions: int = SMALL["positions"]) -> Path:
    """Build and save one tiny model. `arch` is one of ARCHS; `positions`: the longest input it reads."""
    torch.manual_seed(0)
    s = dict(SMALL, positions=positions)
    if arch in ("bert-mlm", "bert-pretraining", "bert-encoder"):
        tok = _tok("bert", 200, positions)
        cls = {"bert-mlm": BertForMaskedLM, "bert-pretraining": BertForPreTraining, "bert-encoder": BertModel}[arch]
        model = cls(_bert_config(tok, positions))
    elif arch == "distilbert-mlm":
        tok = _tok("bert", 200, positions)
        model = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(tok), dim=s["hidden"], n_layers=s["layers"],
                                                       n_heads=s["heads"], hidden_dim=s["inter"],
                                                       max_position_embeddings=s["positions"], pad_token_id=tok.pad_token_id))
    elif arch == "roberta-mlm":
        tok = _tok("roberta", 300, positions)
        model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                                                 num_attention_heads=s["heads"], intermediate_size=s["inter"],
                                                 max_position_embeddings=s["positions"] + 2, pad_token_id=tok.pad_token_id,
                                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    elif arch == "albert-pretraining":
        tok = _tok("albert", 200, positions)
        model = AlbertForPreTraining(AlbertConfig(vocab_size=len(tok), embedding_size=16, hidden_size=s["hidden"],
                                                  num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                                                  intermediate_size=s["inter"], max_position_embeddings=s["positions"],
                                                  pad_token_id=tok.pad_token_id))
    elif arch == "gpt2":
        tok = _tok("gpt2", 300, positions)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=s["hidden"], n_layer=s["layers"], n_head=s["heads"],
                                           n_positions=s["positions"], bos_token_id=tok.bos_token_id,
                                           eos_token_id=tok.eos_token_id))
    else:
        raise KeyError(arch)
    path = out / arch
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


ARCHS = ["bert-mlm", "bert-pretraining", "bert-encoder", "distilbert-mlm", "roberta-mlm", "albert-pretraining", "gpt2"]


def build_toyworld(arch: str, out: Path) -> Path:
    """A tiny random "gpt2" or "bert-mlm" whose tokenizer was trained on toy-world text, so that the verb
    forms of agreement probes are one token each (as in the demo models). Saved under out/toyworld-<arch>."""
    from model.train.toyworld import generate_corpus

    torch.manual_seed(0)
    sents = [s for d in generate_corpus(400, seed=5) for s in d]
    tok = train_tokenizer(arch.split("-")[0], sents, 1200, max_length=SMALL["positions"])
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=SMALL["hidden"], n_layer=SMALL["layers"],
                                           n_head=SMALL["heads"], n_positions=SMALL["positions"],
                                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    elif arch == "bert-mlm":
        model = BertForMaskedLM(_bert_config(tok, SMALL["positions"]))
    else:
        raise KeyError(arch)
    path = out / f"toyworld-{arch}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
