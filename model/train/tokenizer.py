"""Train the tokenizer each architecture was designed with, on any corpus, with the `tokenizers` library:
WordPiece (BERT), byte-level BPE (GPT-2, RoBERTa, ELMo here), Unigram / SentencePiece-style (ALBERT).
The result is a transformers fast tokenizer: `save_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`
give back the same tokenizer, with special tokens, offsets and word ids working.

    >>> tok = train_tokenizer("bert", ["the dogs run .", "a cat sleeps ."] * 10, vocab_size=60)
    >>> tok.convert_ids_to_tokens(tok("the dogs")["input_ids"])[0]
    '[CLS]'
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

KINDS = {"bert": "wordpiece", "distilbert": "wordpiece", "roberta": "bpe-roberta", "gpt2": "bpe", "elmo": "bpe",
         "albert": "unigram"}


def _pair_template(tok: Tokenizer, cls: str, sep: str) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )


def train_tokenizer(arch: str, sentences: Iterable[str], vocab_size: int, max_length: int = 512) -> PreTrainedTokenizerFast:
    """arch: bert | distilbert | roberta | albert | gpt2 | elmo. max_length: the model's usable positions."""
    kind = KINDS.get(arch)
    if kind is None:
        raise ValueError(f"no tokenizer recipe for {arch!r}; choose one of {', '.join(KINDS)}")
    sentences = list(sentences)
    if kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
        tok.post_processor = _pair_template(tok, "[CLS]", "[SEP]")
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)
    if kind == "unigram":
        specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(sentences, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                                   unk_token="<unk>"))
        tok.post_processor = _pair_template(tok, "[CLS]", "[SEP]")
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)
    # byte-level BPE: every byte is in the alphabet, so nothing is ever unknown
    roberta = kind == "bpe-roberta"
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if roberta else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                       model_max_length=max_length)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=max_length)
