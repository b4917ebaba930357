"""Tokenizer training: deterministic, reloadable with AutoTokenizer, special tokens / offsets / word ids work."""
import pytest
from transformers import AutoTokenizer

from model.train.tokenizer import train_tokenizer
from model.train.toyworld import generate_corpus

SENTS = [s for d in generate_corpus(150, seed=5) for s in d] + [
    "Unbelievable tokenization happens here, doesn't it?", "The printers print printed prints quickly.",
] * 5

SPECIALS = {
    "bert": ("[CLS]", "[SEP]", "[MASK]", "[PAD]"),
    "albert": ("[CLS]", "[SEP]", "[MASK]", "<pad>"),
    "roberta": ("<s>", "</s>", "<mask>", "<pad>"),
    "gpt2": (None, None, None, None),
}


@pytest.mark.parametrize("arch", ["bert", "albert", "roberta", "gpt2"])
def test_training_is_deterministic(arch):
    a = train_tokenizer(arch, SENTS, 400)
    b = train_tokenizer(arch, SENTS, 400)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) <= 400 + 5


@pytest.mark.parametrize("arch", ["bert", "albert", "roberta", "gpt2"])
def test_reload_specials_offsets_word_ids(arch, tmp_path):
    tok = train_tokenizer(arch, SENTS, 400, max_length=64)
    tok.save_pretrained(tmp_path)
    re = AutoTokenizer.from_pretrained(str(tmp_path))
    assert re.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    cls, sep, mask, pad = SPECIALS[arch]
    assert (re.cls_token, re.sep_token, re.mask_token, re.pad_token) == (cls, sep, mask, pad)
    assert re.model_max_length == 64
    text = "the dogs near the cat run ."
    enc = re(text, "it sleeps .", return_offsets_mapping=True)
    toks = re.convert_ids_to_tokens(enc["input_ids"])
    if cls:
        assert toks[0] == cls and toks.count(sep) >= 2
        assert re.mask_token_id is not None and re.convert_ids_to_tokens(re.mask_token_id) == mask
    # every non-special token's offsets point into the text it came from, and word ids follow words
    first = [i for i, s in enumerate(enc.sequence_ids()) if s == 0]
    for i in first:
        start, end = enc["offset_mapping"][i]
        assert text[start:end].strip() and text[start:end].strip().lower() in text
    words = [enc.word_ids()[i] for i in first]
    assert words == sorted(words) and words[0] == 0 and words[-1] == len(text.split()) - 1
    decoded = re.decode(re(text)["input_ids"], skip_special_tokens=True)
    assert decoded.replace(" ", "") == text.replace(" ", "")  # BERT's decode joins "run ." to "run."


def test_wordpiece_continuations_and_unigram_marks():
    bert = train_tokenizer("bert", SENTS, 300)
    pieces = bert.tokenize("unbelievably")
    assert len(pieces) > 1 and not pieces[0].startswith("##") and all(p.startswith("##") for p in pieces[1:])
    albert = train_tokenizer("albert", SENTS, 300)
    pieces = albert.tokenize("unbelievably the")
    assert pieces[0].startswith("▁") and pieces[-1] == "▁the"  # a frequent word is one piece
    assert not any(p.startswith("▁") for p in pieces[1:-1])  # word-internal pieces carry no mark
    assert albert.convert_tokens_to_string(pieces) == "unbelievably the"


def test_unknown_arch():
    with pytest.raises(ValueError, match="no tokenizer recipe"):
        train_tokenizer("t5", SENTS, 300)


@pytest.mark.parametrize("arch", ["roberta", "albert"])
def test_mask_token_takes_the_place_of_a_word(arch, tmp_path):
    """In training the mask replaces a whole word piece ("Ġruns" / "▁runs"), space included; typed text
    "cats <mask> ." must look the same, not a lone space piece followed by the mask."""
    tok = train_tokenizer(arch, SENTS, 400)
    tok.save_pretrained(tmp_path)
    for t in (tok, AutoTokenizer.from_pretrained(str(tmp_path))):
        masked = t.convert_ids_to_tokens(t(f"the dogs near the cat {t.mask_token} .")["input_ids"])
        plain = t.convert_ids_to_tokens(t("the dogs near the cat runs .")["input_ids"])
        i = masked.index(t.mask_token)
        tail = masked[i + 1:]
        assert masked[:i] == plain[:i] and tail == plain[len(plain) - len(tail):]
        assert plain[i].startswith(("Ġ", "▁"))  # the mask stands where the word piece with its space was
