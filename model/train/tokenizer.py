"""Train the tokenizer each architecture was designed with, on any corpus, with the `tokenizers` library:
WordPiece (BERT), byte-level BPE (GPT-2, RoBERTa, ELMo here), Unigram / SentencePiece-style (ALBERT).
The result is a transformers fast tokenizer: `save_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`
give back the same tokenizer, with special tokens, offsets and word ids working.

Training is deterministic: the same sentences and vocab size give the same vocabulary, in every process.
(`tokenizers`' own WordPiece and Unigram trainers are not: they break ties in Rust hash-map order, so two
runs differ. Its BPE trainer is deterministic, so both are derived from it here:)

- WordPiece: BPE merges learned on words marked with a word-start sign ("▁dog", "s"), then written as a
  WordPiece vocabulary: word-start pieces plain ("dog"), the others as continuations ("##s"). That is
  what `tokenizers`' WordPieceTrainer does too (BPE merges, "##" prefixes), minus the tie-breaking.
- Unigram: the same BPE pieces (SentencePiece's "▁" marks) as the candidate vocabulary, then scores
  (log-probabilities) re-estimated by hard EM: segment every word by Viterbi with the current scores,
  count pieces, take log frequencies, three rounds. Integer counts make it exact.

    >>> tok = train_tokenizer("bert", ["the dogs run .", "a cat sleeps ."] * 10, vocab_size=60)
    >>> tok.convert_ids_to_tokens(tok("the dogs")["input_ids"])[0]
    '[CLS]'
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from model.errors import InputError

KINDS = {"bert": "wordpiece", "distilbert": "wordpiece", "roberta": "bpe-roberta", "gpt2": "bpe", "elmo": "bpe",
         "albert": "unigram"}
MARK = "▁"  # SentencePiece's word-start sign (U+2581)
EM_ROUNDS = 3  # hard-EM rounds for Unigram scores; the segmentation stops changing after two or three


def _mask(token: str) -> AddedToken:
    """The mask token of a tokenizer that marks word starts (Ġ / ▁): it swallows the space before it, as
    in RoBERTa and ALBERT, so "the cats <mask> ." puts the mask where the word " runs" was in training
    instead of a lone space piece followed by the mask."""
    return AddedToken(token, lstrip=True, rstrip=False, normalized=False, special=True)


def _pair_template(tok: Tokenizer, cls: str, sep: str) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )


def _marked_bpe(sentences: list[str], vocab_size: int, normalizer, pre_tokenizer) -> tuple[Tokenizer, list[str]]:
    """BPE over words that carry a word-start mark. Returns the tokenizer (whose pre-tokenizer yields marked
    words) and its pieces in id order (alphabet first, then merges in the order they were learned)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    mark = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="always", split=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizer, mark]) if pre_tokenizer else mark
    tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    vocab = tok.get_vocab()
    return tok, sorted(vocab, key=vocab.get)


def _wordpiece(sentences: list[str], vocab_size: int) -> Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    norm = normalizers.BertNormalizer(lowercase=True)
    _, pieces = _marked_bpe(sentences, vocab_size, norm, pre_tokenizers.BertPreTokenizer())
    alphabet = [p for p in pieces if len(p) == 1 and p != MARK]
    vocab: dict[str, int] = {}
    # every character both word-initial and as a continuation, so any word of known characters is spelled
    for p in specials + alphabet + ["##" + c for c in alphabet]:
        vocab.setdefault(p, len(vocab))
    for p in pieces:
        if len(vocab) >= vocab_size:
            break
        wp = p[1:] if p.startswith(MARK) else "##" + p
        if wp:
            vocab.setdefault(wp, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = _pair_template(tok, "[CLS]", "[SEP]")
    return tok


def _unigram(sentences: list[str], vocab_size: int) -> Tokenizer:
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    bpe, pieces = _marked_bpe(sentences, vocab_size - len(specials), norm, None)
    words = Counter(w for s in sentences for w, _ in bpe.pre_tokenizer.pre_tokenize_str(norm.normalize_str(s)))
    unique = sorted(words)
    counts = _count_pieces(bpe, unique, words)  # round 0: BPE's own segmentation
    for _ in range(EM_ROUNDS):
        scores = _log_freq(pieces, counts)
        viterbi = Tokenizer(models.Unigram([(p, scores[p]) for p in pieces], unk_id=None))
        counts = _count_pieces(viterbi, unique, words)
    scores = _log_freq(pieces, counts)
    vocab = [(p, 0.0) for p in specials] + [(p, scores[p]) for p in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=1))
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=MARK, prepend_scheme="always", split=True)
    tok.post_processor = _pair_template(tok, "[CLS]", "[SEP]")
    tok.add_special_tokens([_mask("[MASK]")])
    return tok


def _count_pieces(seg: Tokenizer, unique: list[str], freq: Counter) -> Counter:
    """How often each piece occurs when every (already marked) word is segmented by `seg`'s model alone."""
    bare = Tokenizer(seg.model)  # no normalizer / pre-tokenizer: the words are final
    counts: Counter = Counter()
    for w, enc in zip(unique, bare.encode_batch(unique, add_special_tokens=False)):
        for p in enc.tokens:
            counts[p] += freq[w]
    return counts


def _log_freq(pieces: list[str], counts: Counter) -> dict[str, float]:
    """log relative frequency; pieces never used get a score below every used one (but stay spellable)."""
    total = sum(counts[p] for p in pieces) or 1
    floor = math.log(0.5 / total)
    return {p: (math.log(counts[p] / total) if counts[p] else floor) for p in pieces}


def train_tokenizer(arch: str, sentences: Iterable[str], vocab_size: int, max_length: int = 512) -> PreTrainedTokenizerFast:
    """arch: bert | distilbert | roberta | albert | gpt2 | elmo. max_length: the model's usable positions."""
    kind = KINDS.get(arch)
    if kind is None:
        raise InputError(f"no tokenizer recipe for {arch!r}; choose one of {', '.join(KINDS)}")
    sentences = list(sentences)
    if kind == "wordpiece":
        return PreTrainedTokenizerFast(tokenizer_object=_wordpiece(sentences, vocab_size), unk_token="[UNK]",
                                       pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                       model_max_length=max_length)
    if kind == "unigram":
        return PreTrainedTokenizerFast(tokenizer_object=_unigram(sentences, vocab_size), unk_token="<unk>",
                                       pad_token="<pad>", cls_token="[CLS]", sep_token="[SEP]",
                                       mask_token=_mask("[MASK]"), model_max_length=max_length)
    # byte-level BPE: every byte is in the alphabet, so nothing is ever unknown
    roberta = kind == "bpe-roberta"
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if roberta else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                           show_progress=False))
    if roberta:
        tok.add_special_tokens([_mask("<mask>")])  # re-registers the trained <mask> (same id) with lstrip
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token=_mask("<mask>"),
                                       model_max_length=max_length)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=max_length)
