"""ELMo, with token-table and with character-CNN input: both language models look only where they should,
padding changes nothing, the softmax is tied, save/load round-trips, and the Backend exposes it like a
causal model (plus backward logits)."""
import json

import pytest
import torch

from model.backends.elmo_backend import ElmoBackend, load_elmo
from model.train.elmo import ElmoConfig, ElmoLM, char_table, lm_losses
from model.train.tokenizer import train_tokenizer


TOKENS = [f"t{i}" if i % 3 else f"Ġw{i}" for i in range(60)]  # spellings for the character-input model


@pytest.fixture(scope="module", params=["tokens", "chars"])
def model(request):
    torch.manual_seed(0)
    cfg = ElmoConfig(vocab_size=60, embed_dim=16, hidden_dim=24, num_layers=2, dropout=0.0,
                     char_cnn=request.param == "chars")
    return ElmoLM(cfg, char_ids=char_table(TOKENS, cfg.max_chars) if cfg.char_cnn else None).eval()


def test_shapes(model):
    out = model(torch.randint(0, 60, (3, 9)))
    assert out.forward_logits.shape == out.backward_logits.shape == (3, 9, 60)
    assert len(out.layers) == 3 and all(h.shape == (3, 9, 32) for h in out.layers)
    assert out.mixed.shape == (3, 9, 32)


def test_forward_lm_is_causal_backward_lm_is_anticausal(model):
    ids = torch.randint(0, 60, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 60
    a, b = model(ids), model(changed)
    # forward position i sees tokens <= i: positions before 6 do not move
    assert torch.allclose(a.forward_logits[0, :6], b.forward_logits[0, :6])
    assert not torch.allclose(a.forward_logits[0, 6:], b.forward_logits[0, 6:])
    # backward position i sees tokens >= i: positions after 6 do not move
    assert torch.allclose(a.backward_logits[0, 7:], b.backward_logits[0, 7:])
    assert not torch.allclose(a.backward_logits[0, :7], b.backward_logits[0, :7])


def test_loss_targets(model):
    """Forward position i predicts token i + 1, backward position i predicts token i - 1."""
    ids = torch.randint(0, 60, (2, 8))
    out = model(ids)
    fwd, bwd = lm_losses(out, ids)
    lf = torch.log_softmax(out.forward_logits, -1)
    lb = torch.log_softmax(out.backward_logits, -1)
    ref_f = -torch.stack([lf[b, i, ids[b, i + 1]] for b in range(2) for i in range(7)]).mean()
    ref_b = -torch.stack([lb[b, i, ids[b, i - 1]] for b in range(2) for i in range(1, 8)]).mean()
    assert torch.allclose(fwd, ref_f, atol=1e-6) and torch.allclose(bwd, ref_b, atol=1e-6)
    assert torch.allclose(model.loss(ids), (ref_f + ref_b) / 2, atol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_changes_nothing(model, side):
    short, long = torch.randint(1, 60, (1, 5)), torch.randint(1, 60, (1, 8))
    ids = torch.zeros(2, 8, dtype=torch.long)
    mask = torch.zeros(2, 8, dtype=torch.long)
    cols = slice(0, 5) if side == "right" else slice(3, 8)
    ids[0, cols], mask[0, cols] = short[0], 1
    ids[1], mask[1] = long[0], 1
    batch, alone = model(ids, mask), model(short)
    assert torch.allclose(batch.forward_logits[0, cols], alone.forward_logits[0], atol=1e-5)
    assert torch.allclose(batch.backward_logits[0, cols], alone.backward_logits[0], atol=1e-5)
    assert all(torch.allclose(x[0, cols], y[0], atol=1e-5) for x, y in zip(batch.layers, alone.layers))
    assert torch.allclose(batch.forward_logits[1], model(long).forward_logits[0], atol=1e-5)


def test_softmax_tied_to_the_input_vectors(model):
    out = model(torch.tensor([[1, 2, 3]]))
    table = model.token_table()  # (vocab, embed)
    top = model.fwd(table[torch.tensor([[1, 2, 3]])])[-1]  # dropout is 0
    assert torch.allclose(out.forward_logits, top @ table.T, atol=1e-5)
    assert not any(p.shape == (60, 16) for n, p in model.named_parameters() if n != "embed.weight")
    if model.config.char_cnn:  # no table of token vectors at all: they come from the spellings
        assert model.embed is None and model.char_ids.dtype == torch.long


def test_char_table_spells_tokens_in_utf8_bytes():
    t = char_table(["ab", "é", None, "x" * 20], 8)
    assert t.tolist()[:3] == [[1, 100, 101, 2, 0, 0, 0, 0], [1, 198, 172, 2, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0]]
    assert t[3].tolist() == [1] + [ord("x") + 3] * 6 + [2]  # cut to max_chars, the end mark kept


def test_char_input_shares_evidence_between_spellings():
    """Two tokens spelled alike get close vectors before any training; a table gives unrelated ones."""
    torch.manual_seed(0)
    cfg = ElmoConfig(vocab_size=3, embed_dim=16, hidden_dim=24, char_cnn=True)
    m = ElmoLM(cfg, char_ids=char_table(["running", "runnings", "zq"], cfg.max_chars)).eval()
    with torch.no_grad():
        v = torch.nn.functional.normalize(m.token_table(), dim=-1)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    with pytest.raises(ValueError, match="char_ids must be"):
        ElmoLM(cfg, char_ids=torch.zeros(2, 16, dtype=torch.long))


def test_save_load_backend(model, tmp_path):
    tok = train_tokenizer("elmo", ["the dog runs .", "the cats sleep ."] * 20, vocab_size=60)
    cfg = ElmoConfig(vocab_size=len(tok), embed_dim=16, hidden_dim=24, dropout=0.0, char_cnn=model.config.char_cnn)
    chars = char_table(tok.convert_ids_to_tokens(list(range(len(tok)))), cfg.max_chars) if cfg.char_cnn else None
    m = ElmoLM(cfg, char_ids=chars).eval()
    m.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "lmscope-elmo" and (tmp_path / "model.safetensors").exists()
    backend, tok2 = load_elmo(tmp_path)
    assert isinstance(backend, ElmoBackend) and backend.kind == "elmo" and not backend.has_attention
    ids = torch.tensor([tok2("the dog runs .")["input_ids"]])
    out = backend.forward(ids)
    ref = m(ids)
    assert torch.allclose(out.logits, ref.forward_logits, atol=1e-5)
    assert torch.allclose(out.backward_logits, ref.backward_logits, atol=1e-5)
    assert out.attention is None and len(out.hidden_states) == 3
    assert torch.allclose(backend.next_token_logits(ids), ref.forward_logits[:, -1])
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(ValueError, match="not an lmscope ELMo"):
        load_elmo(tmp_path)
