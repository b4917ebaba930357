"""Tiny random models of every supported architecture, saved with `save_pretrained` (safetensors).

Built from configs and tokenizers trained here on a few sentences, so tests never touch a hub.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
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
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
)

SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a student types a sentence and sees how each tokenizer cuts it.",
    "the dogs near the cat run quickly; the cat near the dogs sleeps.",
    "attention heads look at other tokens in the sentence.",
    "hello world, this is lmscope! unbelievable tokenization happens here.",
] * 20

SMALL = dict(hidden=32, layers=2, heads=4, inter=64, positions=64)


def _wordpiece(vocab: int = 200) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=SMALL["positions"],
    )


def _bytelevel(vocab: int = 300, roberta: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if roberta else ["<|endoftext|>"]
    tok.train_from_iterator(
        SENTENCES,
        trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
            cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=SMALL["positions"] - 2,
        )
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        model_max_length=SMALL["positions"],
    )


def _unigram(vocab: int = 200) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(SENTENCES, trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials, unk_token="<unk>"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=SMALL["positions"],
    )


def _bert_config(tok, **kw) -> BertConfig:
    s = SMALL
    return BertConfig(vocab_size=len(tok), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], intermediate_size=s["inter"], max_position_embeddings=s["positions"],
                      pad_token_id=tok.pad_token_id, **kw)


def build(arch: str, out: Path) -> Path:
    """Build and save one tiny model. `arch` is one of ARCHS."""
    torch.manual_seed(0)
    s = SMALL
    if arch in ("bert-mlm", "bert-pretraining", "bert-encoder"):
        tok = _wordpiece()
        cls = {"bert-mlm": BertForMaskedLM, "bert-pretraining": BertForPreTraining, "bert-encoder": BertModel}[arch]
        model = cls(_bert_config(tok))
    elif arch == "distilbert-mlm":
        tok = _wordpiece()
        model = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(tok), dim=s["hidden"], n_layers=s["layers"],
                                                       n_heads=s["heads"], hidden_dim=s["inter"],
                                                       max_position_embeddings=s["positions"], pad_token_id=tok.pad_token_id))
    elif arch == "roberta-mlm":
        tok = _bytelevel(roberta=True)
        model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                                                 num_attention_heads=s["heads"], intermediate_size=s["inter"],
                                                 max_position_embeddings=s["positions"] + 2, pad_token_id=tok.pad_token_id,
                                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    elif arch == "albert-pretraining":
        tok = _unigram()
        model = AlbertForPreTraining(AlbertConfig(vocab_size=len(tok), embedding_size=16, hidden_size=s["hidden"],
                                                  num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                                                  intermediate_size=s["inter"], max_position_embeddings=s["positions"],
                                                  pad_token_id=tok.pad_token_id))
    elif arch == "gpt2":
        tok = _bytelevel()
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
