"""Masking statistics and semantics; compared with transformers' DataCollatorForLanguageModeling."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.masking import KEPT, MASKED, RANDOM, DynamicMasker, explain, mlm_mask, nsp_pairs, sop_pairs, static_mask

V, MASK = 1000, 4


def _batch(rows=400, seq=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, V, (rows, seq), generator=g)
    special = torch.zeros(rows, seq, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    special[:, -20:] = True  # padding
    return ids, special


def _stats(selected, action, special):
    n = (~special).sum().item()
    sel = selected.sum().item()
    return sel / n, (action == MASKED).sum().item() / sel, (action == RANDOM).sum().item() / sel, (action == KEPT).sum().item() / sel


def test_bert_statistics_on_200k_positions():
    ids, special = _batch()
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, generator=torch.Generator().manual_seed(1))
    share, m, rnd, kept = _stats(r.selected, r.action, special)
    assert abs(share - 0.15) < 0.005
    assert abs(m - 0.8) < 0.01 and abs(rnd - 0.1) < 0.01 and abs(kept - 0.1) < 0.01
    assert not r.selected[special].any()
    assert torch.equal(r.labels != -100, r.selected)
    assert torch.equal(r.labels[r.selected], ids[r.selected])
    assert (r.input_ids[r.action == MASKED] == MASK).all()
    assert torch.equal(r.input_ids[r.action == KEPT], ids[r.action == KEPT])
    assert torch.equal(r.input_ids[~r.selected], ids[~r.selected])


def test_same_statistics_as_transformers_collator():
    from transformers import DataCollatorForLanguageModeling

    class Tok:  # the collator only needs these
        mask_token = "[MASK]"
        mask_token_id = MASK
        pad_token_id = 0

        def __len__(self):
            return V

        def get_special_tokens_mask(self, ids, already_has_special_tokens=True):
            return [0] * len(ids)

        def convert_tokens_to_ids(self, t):
            return MASK

    ids, special = _batch(rows=200)
    col = DataCollatorForLanguageModeling(Tok(), mlm_probability=0.15, return_tensors="pt")
    torch.manual_seed(0)
    inputs, labels = col.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    sel = labels != -100
    assert not sel[special].any() and torch.equal(labels[sel], ids[sel])  # same label semantics as ours
    n_sel = sel.sum().item()
    masked, changed = (inputs == MASK) & sel, (inputs != ids) & sel & (inputs != MASK)
    theirs = (n_sel / (~special).sum().item(), masked.sum().item() / n_sel, changed.sum().item() / n_sel)
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, generator=torch.Generator().manual_seed(0))
    share, m, rnd, _ = _stats(r.selected, r.action, special)
    ours = (share, m, rnd * (1 - 1 / V))  # a random draw equal to the original token looks "unchanged"
    for a, b, tol in zip(ours, theirs, (0.005, 0.01, 0.01)):
        assert abs(a - b) < tol, (ours, theirs)


class _WWMTok:  # what DataCollatorForLanguageModeling(whole_word_mask=True) needs of a fast tokenizer
    mask_token, mask_token_id, pad_token_id, is_fast = "[MASK]", MASK, 0, True

    def __len__(self):
        return V

    def convert_tokens_to_ids(self, t):
        return MASK


def _pieces(rows, seq, pieces_per_word=3):
    """Words of `pieces_per_word` adjacent pieces, a space between words; [CLS] first, [SEP] last."""
    ids, special = _batch(rows=rows, seq=seq)
    special[:, 1:-1] = False  # no padding here: only [CLS] and [SEP]
    pos = torch.arange(seq - 2)
    words = torch.cat([torch.tensor([-1]), pos // pieces_per_word, torch.tensor([-1])]).repeat(rows, 1)  # (batch, seq)
    start = torch.cat([torch.tensor([0]), pos * 4 - pos % pieces_per_word, torch.tensor([0])])  # gap of 1 char between words
    offsets = torch.stack([start, start + 3], -1)  # (seq, 2) pieces of 3 characters
    offsets[0] = offsets[-1] = 0
    return ids, special, words, offsets.repeat(rows, 1, 1)  # (batch, seq, 2)


def test_whole_word_same_semantics_as_transformers():
    from transformers import DataCollatorForLanguageModeling

    ids, special, words, offsets = _pieces(rows=200, seq=512)
    col = DataCollatorForLanguageModeling(_WWMTok(), whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0)
    their_words, _ = col._calc_word_ids_and_prob_mask(offsets.numpy(), special.int().numpy())
    assert (torch.from_numpy(their_words) - 1)[~special].equal(words[~special])  # same notion of a word
    torch.manual_seed(0)
    inputs, labels = col.torch_mask_tokens(ids.clone(), special_tokens_mask=special.int(), offset_mapping=offsets)
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, word_ids=words, mask_ratio=1.0, random_ratio=0.0,
                 generator=torch.Generator().manual_seed(0))
    theirs, ours = labels != -100, r.selected
    n = (~special).sum().item()
    assert abs(theirs.sum().item() / n - ours.sum().item() / n) < 0.01
    for sel, corrupted in ((theirs, inputs), (ours, r.input_ids)):
        assert abs(sel.sum().item() / n - 0.15) < 0.01
        assert (corrupted[sel] == MASK).all() and torch.equal(corrupted[~sel], ids[~sel])
    # spreading: their rule applied to our chosen first pieces gives back exactly our selection
    first = ours & torch.cat([torch.ones(200, 1, dtype=torch.bool), words[:, 1:] != words[:, :-1]], 1)
    assert torch.equal(torch.from_numpy(col._whole_word_mask(their_words, first.numpy())), ours)


def test_whole_word_selects_whole_words():
    ids, special = _batch(rows=100, seq=128)
    words = torch.arange(128).div(3, rounding_mode="floor").repeat(100, 1)  # 3 pieces per word
    words[special] = -1
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, word_ids=words, generator=torch.Generator().manual_seed(3))
    for row in range(100):
        for w in words[row].unique().tolist():
            if w < 0:
                continue
            cols = (words[row] == w)
            picked = r.selected[row, cols]
            assert picked.all() or not picked.any()
    share = r.selected.sum().item() / (~special).sum().item()
    assert abs(share - 0.15) < 0.02
    assert torch.equal(r.labels != -100, r.selected) and not r.selected[special].any()
    # each selected piece draws its own branch: some words mix [MASK] with a kept or random piece
    mixed = [(r.action[b][words[b] == w].unique().numel() > 1) for b in range(100) for w in range(1, 42)
             if r.selected[b][words[b] == w].any()]
    assert any(mixed)


@pytest.mark.parametrize("word_level", [False, True])
def test_bounds_int_probability_and_int32_ids(word_level):
    ids, special = _batch(rows=8, seq=64)
    words = torch.arange(64).repeat(8, 1).masked_fill(special, -1) if word_level else None
    r = mlm_mask(ids.int(), special, vocab_size=V, mask_token_id=MASK, mlm_probability=1, mask_ratio=0.0,
                 random_ratio=1.0, random_token_low=900, word_ids=words, generator=torch.Generator().manual_seed(0))
    assert r.labels.dtype == r.input_ids.dtype == torch.int64 and r.action.dtype == torch.int8
    assert r.selected.equal(~special)
    assert ((r.input_ids[~special] >= 900) & (r.input_ids[~special] < V)).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(mlm_probability=1.5), "mlm_probability"),
    (dict(mask_ratio=0.8, random_ratio=0.3), "sum to at most 1"),
    (dict(random_token_low=V), "empty"),
    (dict(word_ids=torch.zeros(2, 3, dtype=torch.long)), "same"),
])
def test_bad_arguments(kwargs, match):
    ids, special = _batch(rows=2, seq=64)
    with pytest.raises(ValueError, match=match):
        mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, **kwargs)


def test_seeds():
    ids, special = _batch(rows=4, seq=64)
    a = static_mask(ids, special, 7, vocab_size=V, mask_token_id=MASK)
    b = static_mask(ids, special, 7, vocab_size=V, mask_token_id=MASK)
    c = static_mask(ids, special, 8, vocab_size=V, mask_token_id=MASK)
    assert torch.equal(a.input_ids, b.input_ids) and not torch.equal(a.selected, c.selected)
    dyn = DynamicMasker(0, vocab_size=V, mask_token_id=MASK)
    first, second = dyn(ids, special), dyn(ids, special)
    assert not torch.equal(first.selected, second.selected)  # dynamic: new mask each epoch
    again = DynamicMasker(0, vocab_size=V, mask_token_id=MASK)
    assert torch.equal(again(ids, special).input_ids, first.input_ids)  # ...reproducible from the seed
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    x, y, z = (mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, generator=g(s)) for s in (5, 5, 6))
    assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("input_ids", "labels", "selected", "action"))
    assert not torch.equal(x.input_ids, z.input_ids)


def test_explain_says_why():
    ids = torch.tensor([[1, 20, 21, 22, 2]])
    special = torch.tensor([[True, False, False, False, True]])
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, mlm_probability=1.0, mask_ratio=1.0, random_ratio=0.0)
    rows = explain(r, ["[CLS]", "a", "b", "c", "[SEP]"], id_to_token=lambda i: "[MASK]" if i == MASK else str(i))
    assert rows[0]["action"] == "special" and "never" in rows[0]["reason"]
    assert rows[1]["action"] == "mask" and rows[1]["shown"] == "[MASK]" and "100% branch" in rows[1]["reason"]
    with pytest.raises(ValueError, match="one token"):
        explain(r, ["[CLS]", "a"])


def test_explain_every_action_at_default_rates():
    ids, special = _batch(rows=1, seq=400)
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, mlm_probability=0.5, generator=torch.Generator().manual_seed(0))
    rows = explain(r, [str(i) for i in ids[0].tolist()], id_to_token=str)
    by_action = {}
    for i, d in enumerate(rows):
        by_action.setdefault(d["action"], d)
        code = {"untouched": 0, "special": 0, "mask": MASKED, "random": RANDOM, "kept": KEPT}[d["action"]]
        assert int(r.action[0, i]) == code and (d["action"] == "special") == bool(special[0, i])
        assert d["shown"] == str(int(r.input_ids[0, i]))
    assert set(by_action) == {"special", "untouched", "mask", "random", "kept"}
    assert "selected (50%)" in by_action["mask"]["reason"] and "80% branch" in by_action["mask"]["reason"]
    assert "10% branch" in by_action["random"]["reason"] and "10% branch" in by_action["kept"]["reason"]
    words = torch.arange(400).div(2, rounding_mode="floor").repeat(1, 1).masked_fill(special, -1)
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, word_ids=words, generator=torch.Generator().manual_seed(0))
    assert any("whole-word" in d["reason"] for d in explain(r, [""] * 400))


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(1, 4), seq=st.integers(1, 40), p=st.floats(0, 1), seed=st.integers(0, 1000), data=st.data())
def test_specials_are_never_selected(rows, seq, p, seed, data):
    special = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=seq, max_size=seq), min_size=rows, max_size=rows)))
    ids = torch.randint(5, 50, (rows, seq), generator=torch.Generator().manual_seed(seed))
    r = mlm_mask(ids, special, vocab_size=50, mask_token_id=MASK, mlm_probability=p, generator=torch.Generator().manual_seed(seed))
    assert not r.selected[special].any()
    assert torch.equal(r.input_ids[special], ids[special])
    # whole-word selection too, even when a word id (wrongly) reaches onto a special position
    words = torch.randint(-1, 6, (rows, seq), generator=torch.Generator().manual_seed(seed + 1))
    r = mlm_mask(ids, special, vocab_size=50, mask_token_id=MASK, mlm_probability=p, word_ids=words,
                 generator=torch.Generator().manual_seed(seed))
    assert not r.selected[special].any() and not r.selected[words < 0].any()
    assert torch.equal(r.labels != -100, r.selected)


DOCS = [[f"d{d}s{s}" for s in range(6)] for d in range(400)]


def test_nsp_half_next_half_random_from_another_document():
    pairs = nsp_pairs(DOCS, torch.Generator().manual_seed(0))
    nxt = [p for p in pairs if p.label == 0]
    assert abs(len(nxt) / len(pairs) - 0.5) < 0.02
    for p in pairs:
        da, sa = p.a[1:].split("s")
        db, sb = p.b[1:].split("s")
        if p.label == 0:
            assert da == db and int(sb) == int(sa) + 1
        else:
            assert da != db


def test_sop_half_swapped_same_document():
    pairs = sop_pairs(DOCS, torch.Generator().manual_seed(0))
    assert abs(sum(p.label for p in pairs) / len(pairs) - 0.5) < 0.02
    for p in pairs:
        (da, sa), (db, sb) = (x[1:].split("s") for x in (p.a, p.b))
        assert da == db and int(sb) - int(sa) == (1 if p.label == 0 else -1)


def test_nsp_single_sentence_documents():
    docs = [["d0s0", "d0s1", "d0s2"], ["d1s0"], [], ["d3s0"]]
    pairs = nsp_pairs(docs * 1, torch.Generator().manual_seed(1), p_next=0.0)
    assert [p.a for p in pairs] == ["d0s0", "d0s1"]  # only sentences that have a successor start a pair
    assert all(p.b in ("d1s0", "d3s0") and p.label == 1 and "another document" in p.reason for p in pairs)
    assert all(p.label == 0 for p in nsp_pairs(docs, torch.Generator(), p_next=1.0))


def test_pairs_need_enough_material():
    with pytest.raises(ValueError, match="two non-empty documents"):
        nsp_pairs([["only one", "and two"], []], torch.Generator())
    with pytest.raises(ValueError, match="two sentences"):
        nsp_pairs([["a"], ["b"]], torch.Generator())
    with pytest.raises(ValueError, match="two sentences"):
        sop_pairs([["a"], ["b"]], torch.Generator())
