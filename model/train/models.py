"""The five architectures as trainable modules, and the training loss of each.

BERT (BertForPreTraining: MLM + NSP), RoBERTa (RobertaForMaskedLM: MLM only), ALBERT
(AlbertForPreTraining: MLM + SOP, factorized embeddings, one shared layer), GPT-2 (GPT2LMHeadModel: causal
LM) and our ELMo (model.train.elmo). The transformers models are saved with `save_pretrained`, so plain
`AutoModelFor*.from_pretrained(dir)` loads them.

`Objective` computes each pretraining loss. The masked-LM losses apply the LM head only at the masked
positions (gathered first): the same loss as `model(..., labels=...)` -- a test checks it -- without
computing vocabulary logits for the ~70% of positions whose label is -100.

    >>> import types
    >>> tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=1, bos_token_id=1)
    >>> m = build_model("gpt2", vocab_size=300, layers=2, hidden=64, heads=2, seq_len=32, dropout=0.0,
    ...                 seed=0, tok=tok)
    >>> Objective(m, "gpt2")({"input_ids": torch.randint(0, 300, (2, 32))})["loss"].shape
    torch.Size([])
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from model.train.elmo import ElmoConfig, ElmoLM, char_table, lm_losses


def build_model(arch: str, *, vocab_size: int, layers: int, hidden: int, heads: int, seq_len: int, dropout: float,
                seed: int, tok, char_cnn: bool = False) -> torch.nn.Module:
    """A freshly initialised model (weights are a function of seed). tok supplies the special-token ids
    (and, for a character-input ELMo, the spelling of every token)."""
    import transformers as T

    common = dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, pad_token_id=tok.pad_token_id, hidden_dropout_prob=dropout,
                  attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    if arch == "bert":
        m = T.BertForPreTraining(T.BertConfig(max_position_embeddings=seq_len, **common))
    elif arch == "roberta":
        # RoBERTa numbers positions from pad_token_id + 1, so it needs two extra position rows
        m = T.RobertaForMaskedLM(T.RobertaConfig(max_position_embeddings=seq_len + 2, bos_token_id=tok.bos_token_id,
                                                 eos_token_id=tok.eos_token_id, **common))
    elif arch == "albert":
        # factorized embeddings: vocab -> embedding_size (< hidden) -> hidden; all layers share one layer's weights
        m = T.AlbertForPreTraining(T.AlbertConfig(embedding_size=max(32, hidden // 2), max_position_embeddings=seq_len,
                                                  classifier_dropout_prob=dropout, **common))
    elif arch == "gpt2":
        m = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads,
                                           n_positions=seq_len, resid_pdrop=dropout, embd_pdrop=dropout,
                                           attn_pdrop=dropout, bos_token_id=tok.eos_token_id,
                                           eos_token_id=tok.eos_token_id,
                                           # GPT-2's tanh GELU as one fused torch kernel instead of transformers'
                                           # five-op "gelu_new": the same function, ~12% faster steps at tiny size
                                           activation_function="gelu_pytorch_tanh"))
    elif arch == "elmo":
        # hidden is the token-embedding width; the LSTM cells are twice as wide and projected back (LSTMP)
        cfg = ElmoConfig(vocab_size=vocab_size, embed_dim=hidden, hidden_dim=2 * hidden, num_layers=2,
                         dropout=dropout, max_positions=4096, char_cnn=char_cnn)
        chars = char_table(tok.convert_ids_to_tokens(list(range(vocab_size))), cfg.max_chars) if char_cnn else None
        m = ElmoLM(cfg, char_ids=chars)
        # the scalar mix is learned by a downstream task, not by the LM losses: frozen here, so that
        # DistributedDataParallel does not wait for gradients that never come
        m.mix_weights.requires_grad_(False)
        m.gamma.requires_grad_(False)
        return m
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    m.set_attn_implementation("sdpa")  # training needs no attention weights; inspection records its own
    return m


class Objective(torch.nn.Module):
    """A model plus its pretraining loss: forward(batch) -> dict of losses.

    Everything a step computes happens inside this one forward, so DistributedDataParallel can wrap it
    (DDP only synchronises gradients of work done through the wrapper's forward).
    """

    def __init__(self, model: torch.nn.Module, arch: str):
        super().__init__()
        self.model, self.arch = model, arch

    def forward(self, batch: dict, with_logits: bool = False) -> dict:
        m, arch = self.model, self.arch
        if arch == "elmo":
            fwd, bwd = lm_losses(m(batch["input_ids"]), batch["input_ids"])
            return {"loss": (fwd + bwd) / 2, "forward_loss": fwd, "backward_loss": bwd}
        if arch == "gpt2":
            h = m.transformer(input_ids=batch["input_ids"], use_cache=False).last_hidden_state  # (batch, seq, hidden)
            logits = m.lm_head(h[:, :-1]).float()  # (batch, seq - 1, vocab): position i predicts token i + 1
            loss = F.cross_entropy(logits.flatten(0, 1), batch["input_ids"][:, 1:].flatten())
            return {"loss": loss}
        return self._masked_lm(batch, with_logits)

    def _masked_lm(self, batch: dict, with_logits: bool) -> dict:
        """MLM (+ NSP / SOP) with the LM head applied to the masked positions only."""
        m, arch = self.model, self.arch
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if arch in ("bert", "albert"):
            kw["token_type_ids"] = batch["token_type_ids"]
        body = getattr(m, arch)(**kw)  # m.bert / m.roberta / m.albert: the encoder without heads
        sel = batch["labels"] != -100  # (batch, seq)
        targets = batch["labels"][sel]  # (n_selected,)
        hidden = body.last_hidden_state[sel]  # (n_selected, hidden)
        head = m.cls.predictions if arch == "bert" else m.lm_head if arch == "roberta" else m.predictions
        logits = head(hidden).float()  # (n_selected, vocab)
        mlm = F.cross_entropy(logits, targets)
        out = {"loss": mlm, "mlm_loss": mlm}
        if arch in ("bert", "albert"):
            pair_head = m.cls.seq_relationship if arch == "bert" else m.sop_classifier
            pair_logits = pair_head(body.pooler_output).float()  # (batch, 2)
            out["pair_loss"] = F.cross_entropy(pair_logits, batch["pair_labels"])
            out["loss"] = mlm + out["pair_loss"]
            out["pair_logits"] = pair_logits
        if with_logits:
            out["logits"], out["targets"] = logits, targets
        return out
