"""model.onnx.parity: the sample inputs an export is traced and checked on, and the error measure."""
import torch

from model.onnx.parity import MASK_WORD, compare, decoder_samples, sample_batches
from model.onnx.wrappers import spec_for
from model.load import load_tokenizer


def test_sample_batches_are_one_row_and_a_right_padded_batch(tiny_models):
    tok = load_tokenizer(tiny_models["bert-pretraining"])
    spec = spec_for("BertForPreTraining", "bert", "pretraining")
    one, three = sample_batches(tok, spec, 64)
    assert set(one) == set(three) == {"input_ids", "attention_mask", "token_type_ids"}
    assert one["input_ids"].shape[0] == 1 and three["input_ids"].shape[0] == 3
    lengths = three["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3  # three different lengths
    for row, mask, n in zip(three["input_ids"], three["attention_mask"], lengths):
        assert (row[n:] == tok.pad_token_id).all() and mask[:n].all() and not mask[n:].any()
    assert tok.mask_token_id in one["input_ids"][0].tolist()  # MASK_WORD swapped for the mask token
    assert MASK_WORD not in tok.decode(one["input_ids"][0])
    assert three["token_type_ids"].shape == three["input_ids"].shape
    cut = decoder_samples([one, three])[-1]
    assert cut.shape == (3, int(lengths.min())) and torch.equal(cut, three["input_ids"][:, : int(lengths.min())])


def test_compare_measures_real_positions_only():
    mask = torch.tensor([[1, 1, 0]])  # (batch, seq): the last position is padding
    want = {"logits": torch.zeros(1, 3, 4), "attentions": torch.zeros(2, 1, 2, 3, 3),
            "hidden_states": torch.full((3, 1, 3, 5), 10.0)}
    got = {k: v.clone() for k, v in want.items()}
    got["logits"][0, 2] = 100.0  # a padded position
    got["attentions"][:, 0, :, 2] = 1.0  # a padded query row
    got["hidden_states"][:, 0, 2] = -7.0
    assert compare([got], [want], [{"attention_mask": mask}]) == {"logits": 0.0, "attentions": 0.0, "hidden_states": 0.0}
    got["attentions"][1, 0, 0, 0, 2] = 0.5  # a real query row's weight on a padded key counts
    got["hidden_states"][0, 0, 1, 0] = 12.0  # relative to max |torch| = 10
    err = compare([got], [want], [{"attention_mask": mask}])
    assert err["attentions"] == 0.5 and abs(err["hidden_states"] - 0.2) < 1e-6 and err["logits"] == 0.0
