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
    theirs = ((sel.sum() / (~special).sum()).item(), ((inputs == MASK) & sel).sum().item() / sel.sum().item())
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, generator=torch.Generator().manual_seed(0))
    ours = _stats(r.selected, r.action, special)[:2]
    assert abs(ours[0] - theirs[0]) < 0.01 and abs(ours[1] - theirs[1]) < 0.02


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


def test_seeds():
    ids, special = _batch(rows=4, seq=64)
    a = static_mask(ids, special, 7, vocab_size=V, mask_token_id=MASK)
    b = static_mask(ids, special, 7, vocab_size=V, mask_token_id=MASK)
    c = static_mask(ids, special, 8, vocab_size=V, mask_token_id=MASK)
    assert torch.equal(a.input_ids, b.input_ids) and not torch.equal(a.selected, c.selected)
    dyn = DynamicMasker(0, vocab_size=V, mask_token_id=MASK)
    assert not torch.equal(dyn(ids, special).selected, dyn(ids, special).selected)  # dynamic: new mask each epoch


def test_explain_says_why():
    ids = torch.tensor([[1, 20, 21, 22, 2]])
    special = torch.tensor([[True, False, False, False, True]])
    r = mlm_mask(ids, special, vocab_size=V, mask_token_id=MASK, mlm_probability=1.0, mask_ratio=1.0, random_ratio=0.0)
    rows = explain(r, ["[CLS]", "a", "b", "c", "[SEP]"], [True, False, False, False, True], id_to_token=lambda i: "[MASK]" if i == MASK else str(i))
    assert rows[0]["action"] == "special" and "never" in rows[0]["reason"]
    assert rows[1]["action"] == "mask" and rows[1]["shown"] == "[MASK]" and "80%" in rows[1]["reason"]


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(1, 4), seq=st.integers(1, 40), p=st.floats(0, 1), seed=st.integers(0, 1000), data=st.data())
def test_specials_are_never_selected(rows, seq, p, seed, data):
    special = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=seq, max_size=seq), min_size=rows, max_size=rows)))
    ids = torch.randint(5, 50, (rows, seq), generator=torch.Generator().manual_seed(seed))
    r = mlm_mask(ids, special, vocab_size=50, mask_token_id=MASK, mlm_probability=p, generator=torch.Generator().manual_seed(seed))
    assert not r.selected[special].any()
    assert torch.equal(r.input_ids[special], ids[special])


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


def test_pairs_need_enough_material():
    with pytest.raises(ValueError, match="two non-empty documents"):
        nsp_pairs([["only one"]], torch.Generator())
    with pytest.raises(ValueError, match="two sentences"):
        sop_pairs([["a"], ["b"]], torch.Generator())
