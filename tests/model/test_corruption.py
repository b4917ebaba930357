"""model/corruption.py on tiny random models: the "how BERT was trained" corruption agrees with the masking
kernel, reseeds, refuses what it cannot do; `mask_positions` masks exactly the picked pieces."""
from __future__ import annotations

import pytest
import torch

from model.corruption import corrupt, mask_positions
from model.inspect import InputError, encode, inspect
from model.results import Token


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("whole_word", [False, True])
def test_corrupt_matches_the_masking_kernel(models, seed, whole_word):
    from kernels.masking import ACTION_NAMES, mlm_mask

    m = models["bert-mlm"]
    text = "unbelievable tokenization happens here and there again and again."
    demo = corrupt(m, text, seed, whole_word=whole_word, mlm_probability=0.5)
    enc = encode(m, text)
    special = torch.tensor([[t.special for t in enc.tokens]])
    wid = None
    if whole_word:
        wid = torch.tensor([[-1 if t.special else t.word for t in enc.tokens]])
    ref = mlm_mask(torch.from_numpy(enc.input_ids)[None], special, vocab_size=m.info.vocab_size,
                   mask_token_id=m.tokenizer.mask_token_id, mlm_probability=0.5, word_ids=wid,
                   generator=torch.Generator().manual_seed(seed))
    for r, a, shown, tok in zip(demo.rows, ref.action[0].tolist(), ref.input_ids[0].tolist(), enc.tokens):
        assert r.action == ("special" if tok.special else ACTION_NAMES[a])
        assert r.shown == (tok.text if tok.special else m.tokenizer.convert_ids_to_tokens(shown))
    if whole_word:  # pieces of one word are chosen together
        chosen = {}
        for r, tok in zip(demo.rows, enc.tokens):
            if not tok.special:
                chosen.setdefault(tok.word, set()).add(r.predicted)
        assert all(len(v) == 1 for v in chosen.values())
    counts = demo.counts()
    assert sum(counts.values()) == len(enc.tokens) and counts["special"] == 2


def test_corrupt_reseeding_and_refusals(models):
    m = models["bert-mlm"]
    text = "the quick brown fox jumps over the lazy dog and the cat sleeps near the dogs."
    draws = {tuple(r.action for r in corrupt(m, text, s).rows) for s in range(6)}
    assert len(draws) > 1  # new seeds give new draws
    assert corrupt(m, text, 3).rows == corrupt(m, text, 3).rows
    with pytest.raises(InputError, match="no mask token"):
        corrupt(models["gpt2"], text)
    with pytest.raises(InputError, match="empty"):
        corrupt(m, "   ")


@pytest.mark.parametrize("arch", ["bert-mlm", "roberta-mlm", "albert-pretraining"])
@pytest.mark.parametrize("whole_word", [False, True])
def test_mask_positions_masks_exactly_the_picked_pieces(models, arch, whole_word):
    m = models[arch]
    text = "hello world, the unbelievable cat sleeps"
    tokens = encode(m, text).tokens
    picks = [i for i, t in enumerate(tokens) if not t.special][1:4:2]
    masked, truths = mask_positions(text, tokens, picks, m.info.mask_token, whole_word)
    expect = set(picks)
    if whole_word:
        words = {tokens[p].word for p in picks}
        expect = {i for i, t in enumerate(tokens) if not t.special and t.word in words}
    expect = {i for i in expect if tokens[i].end > tokens[i].start}
    assert masked.count(m.info.mask_token) == len(expect) == len(truths)
    assert sorted(truths.values()) == sorted(tokens[i].text for i in expect)
    for start in truths:
        assert masked[start:start + len(m.info.mask_token)] == m.info.mask_token
    insp = inspect(m, masked, top_k=3)
    assert len(insp.masks) == len(expect)
    assert {insp.tokens[mp.position].start for mp in insp.masks} <= set(truths) | {s - 1 for s in truths}


def test_mask_positions_ignores_specials_and_out_of_range():
    toks = [Token("[CLS]", 1, 0, 0, True), Token("cat", 7, 0, 3, False, 0), Token("[SEP]", 2, 0, 0, True)]
    assert mask_positions("cat", toks, [0, 2, 9], "[MASK]") == ("cat", {})
