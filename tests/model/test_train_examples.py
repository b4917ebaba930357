"""Example building, masking schedule and losses of the training engine, against references."""
import pytest
import torch

from model.train import examples as D
from model.train.config import TrainConfig
from model.train.prepare import batch_for_step, prepare
from model.train.models import Objective, build_model
from model.train.loop import lr_factor
from model.train.toyworld import generate_corpus


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(120, seed=11)), encoding="utf-8")
    return p


def cfg_for(arch, corpus_file, **kw):
    return TrainConfig(arch=arch, out_dir="unused", corpus=str(corpus_file), vocab_size=300, **kw).resolved()


@pytest.mark.parametrize("n,bs", [(10, 4), (7, 7), (5, 8)])
def test_batch_indices_are_epoch_permutations(n, bs):
    steps = 3 * n
    seen = torch.cat([D.batch_indices(n, bs, s, seed=3) for s in range(steps)])
    for e in range(steps * bs // n):  # each complete epoch visits every example exactly once
        assert sorted(seen[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert torch.equal(D.batch_indices(n, bs, 5, seed=3), D.batch_indices(n, bs, 5, seed=3))
    assert not torch.equal(torch.cat([D.batch_indices(n, bs, s, 3) for s in range(4)]),
                           torch.cat([D.batch_indices(n, bs, s, 4) for s in range(4)]))


def test_sentence_pairs_layout():
    docs = [[[10, 11], [12]], [[20], [21, 22, 23]], [[30, 31, 32, 33, 34, 35]]]
    ex = D.sentence_pairs(docs, seq_len=8, cls=1, sep=2, pad=0, kind="nsp", seed=0)
    for ids, types, mask, label in zip(ex["input_ids"], ex["token_type_ids"], ex["attention_mask"], ex["pair_labels"]):
        row = ids[mask.bool()].tolist()
        assert row[0] == 1 and row[-1] == 2 and row.count(2) == 2 and len(row) <= 8
        cut = row.index(2)
        assert types[: cut + 1].sum() == 0 and types[cut + 1: len(row)].tolist() == [1] * (len(row) - cut - 1)
        a, b = row[1:cut], row[cut + 1:-1]
        if label == 0:  # IsNext: B is the sentence after A in the same document
            assert any(a == d[i][: len(a)] and b == d[i + 1][: len(b)] for d in docs for i in range(len(d) - 1))
    sop = D.sentence_pairs(docs, seq_len=8, cls=1, sep=2, pad=0, kind="sop", seed=0)
    for ids, label in zip(sop["input_ids"], sop["pair_labels"]):
        row = [t for t in ids.tolist() if t]
        cut = row.index(2)
        a, b = row[1:cut], row[cut + 1:-1]
        first = a if label == 0 else b  # swapped pairs put the later sentence first
        assert any(first == d[i][: len(first)] for d in docs for i in range(len(d) - 1))


@pytest.mark.parametrize("arch", ["bert", "roberta", "albert"])
def test_whole_word_ids(arch, corpus_file):
    prep = prepare(cfg_for(arch, corpus_file, whole_word=True))
    ids, words, special = prep.train["input_ids"][:20], prep.train["word_ids"][:20], prep.train["special"][:20]
    assert (words[special] == -1).all() and (words[~special] >= 0).all()
    for row_ids, row_w, row_s in zip(ids, words, special):
        pieces = prep.tok.convert_ids_to_tokens(row_ids.tolist())
        for i in range(1, len(pieces)):
            if row_s[i]:
                continue
            if row_s[i - 1]:  # right after [CLS] / [SEP] / </s>: always a new word
                assert row_w[i] > row_w[:i].max()
            elif arch == "bert":  # WordPiece marks continuations
                assert (row_w[i] == row_w[i - 1]) == pieces[i].startswith("##")
            else:  # byte-level BPE / SentencePiece mark word starts
                assert (row_w[i] == row_w[i - 1]) == (not pieces[i].startswith(("Ġ", "▁")))


def test_static_masks_fixed_dynamic_masks_fresh(corpus_file):
    static = prepare(cfg_for("bert", corpus_file))
    c = cfg_for("bert", corpus_file)
    b0 = batch_for_step(static, c, 0)
    n_steps_per_epoch = static.num_train // c.batch_size
    rows0 = D.batch_indices(static.num_train, c.batch_size, 0, c.seed)
    again, row = next((s, list(rows).index(rows0[0])) for s in range(n_steps_per_epoch, 10 * n_steps_per_epoch)
                      if rows0[0] in list(rows := D.batch_indices(static.num_train, c.batch_size, s, c.seed)))
    b1 = batch_for_step(static, c, again)  # the same example in a later epoch: the same mask
    w = min(b0["labels"].shape[1], b1["labels"].shape[1])
    assert torch.equal(b0["labels"][0, :w], b1["labels"][row, :w])
    dyn_cfg = cfg_for("roberta", corpus_file)
    assert dyn_cfg.dynamic_masking
    dyn = prepare(dyn_cfg)
    x, y = batch_for_step(dyn, dyn_cfg, 0), batch_for_step(dyn, dyn_cfg, 0)
    assert torch.equal(x["input_ids"], y["input_ids"])  # a pure function of (seed, step)
    sel = x["labels"] != -100
    rate = sel.sum() / (x["attention_mask"].bool() & ~torch.isin(x["input_ids"], torch.tensor([0, 2]))).sum()
    assert 0.15 < float(rate) < 0.45  # the preset's 30%


@pytest.mark.parametrize("arch", ["bert", "roberta", "albert", "gpt2"])
def test_objective_equals_transformers_loss(arch, corpus_file):
    """Our loss (LM head on masked positions only; GPT-2 head without the last position) equals the
    loss transformers computes from all positions with labels."""
    c = cfg_for(arch, corpus_file, dropout=0.0)
    prep = prepare(c)
    m = build_model(arch, vocab_size=len(prep.tok), layers=2, hidden=32, heads=2, seq_len=c.seq_len, dropout=0.0,
                    seed=0, tok=prep.tok).eval()
    batch = batch_for_step(prep, c, 0)
    ours = Objective(m, arch)(batch)["loss"]
    if arch == "gpt2":
        ref = m(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    else:
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        if arch == "bert":
            kw.update(token_type_ids=batch["token_type_ids"], next_sentence_label=batch["pair_labels"])
        if arch == "albert":
            kw.update(token_type_ids=batch["token_type_ids"], sentence_order_label=batch["pair_labels"])
        ref = m(**{k: v.contiguous() for k, v in kw.items()}).loss  # transformers' loss .view()s its labels
    assert torch.allclose(ours, ref, atol=1e-5), (float(ours), float(ref))


def test_trim_padding_changes_nothing(corpus_file):
    c = cfg_for("bert", corpus_file, dropout=0.0, seq_len=64)
    prep = prepare(c)
    m = build_model("bert", vocab_size=len(prep.tok), layers=2, hidden=32, heads=2, seq_len=c.seq_len, dropout=0.0,
                    seed=0, tok=prep.tok).eval()
    trimmed = batch_for_step(prep, c, 0)
    assert trimmed["input_ids"].shape[1] < c.seq_len  # toy sentence pairs are shorter than the block
    full = {k: torch.nn.functional.pad(v, (0, c.seq_len - v.shape[1]), value=-100 if k == "labels" else 0)
            if v.ndim == 2 else v for k, v in trimmed.items()}
    with torch.no_grad():
        assert torch.allclose(Objective(m, "bert")(trimmed)["loss"], Objective(m, "bert")(full)["loss"], atol=1e-5)


def test_lr_schedule():
    f = [lr_factor(s, 10, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and max(f) == 1.0
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] == pytest.approx(1 / 90)
