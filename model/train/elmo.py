"""A small ELMo (Peters et al. 2018): bidirectional LSTM language models with a tied softmax and a
learned scalar mix of their layers.

A forward LSTM stack reads left to right and predicts the next token; a separate backward stack reads
right to left and predicts the previous token. Both share the token embedding and the softmax (tied to
the embedding). The contextual representation of a token at layer j is [forward_j ; backward_j]; layer 0
is the token embedding twice. A task would use gamma * sum_j softmax(s)_j * layer_j.

    >>> m = ElmoLM(ElmoConfig(vocab_size=50, embed_dim=16, hidden_dim=32, num_layers=2))
    >>> out = m(torch.randint(0, 50, (2, 7)))
    >>> out.forward_logits.shape, len(out.layers), out.layers[0].shape
    (torch.Size([2, 7, 50]), 3, torch.Size([2, 7, 32]))

Saved as a directory: `config.json` ({"model_type": "lmscope-elmo", ...}), `model.safetensors`, tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class ElmoConfig:
    vocab_size: int
    embed_dim: int = 256  # token embedding and LSTM output projection size (tied softmax needs them equal)
    hidden_dim: int = 512  # LSTM cell size; projected back to embed_dim like ELMo's LSTMP cells
    num_layers: int = 2  # ELMo used 2 biLSTM layers
    dropout: float = 0.1
    max_positions: int = 512  # only for inspection limits; LSTMs have no position table
    model_type: str = "lmscope-elmo"

    def save(self, path: Path) -> None:
        # hidden_size: the width of the contextual representations ([forward ; backward]), for model listings
        d = {**asdict(self), "hidden_size": 2 * self.embed_dim, "architectures": ["ElmoLM"]}
        (path / "config.json").write_text(json.dumps(d, indent=2))

    @classmethod
    def load(cls, path: Path) -> "ElmoConfig":
        d = json.loads((Path(path) / "config.json").read_text())
        if d.get("model_type") != "lmscope-elmo":
            raise ValueError(f"{path} is not an lmscope ELMo model (model_type {d.get('model_type')!r})")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class ElmoOutput:
    forward_logits: torch.Tensor  # (batch, seq, vocab): position i predicts token i + 1
    backward_logits: torch.Tensor  # (batch, seq, vocab): position i predicts token i - 1
    layers: list[torch.Tensor]  # num_layers + 1 x (batch, seq, 2 * embed_dim)
    mixed: torch.Tensor  # (batch, seq, 2 * embed_dim) the learned scalar mix


def lm_losses(out: ElmoOutput, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward-LM, backward-LM) mean cross-entropies in nats: position i of the forward LM predicts
    token i + 1, position i of the backward LM predicts token i - 1."""
    v = out.forward_logits.shape[-1]
    fwd = nn.functional.cross_entropy(out.forward_logits[:, :-1].reshape(-1, v).float(), input_ids[:, 1:].reshape(-1))
    bwd = nn.functional.cross_entropy(out.backward_logits[:, 1:].reshape(-1, v).float(), input_ids[:, :-1].reshape(-1))
    return fwd, bwd


def _orders(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the positions in the order the forward and the backward LSTM read them: real tokens
    first (forward: left to right; backward: right to left), padding last. (batch, seq) int64 each."""
    bsz, n = input_ids.shape
    pos = torch.arange(n, device=input_ids.device).expand(bsz, n)  # (batch, seq)
    if attention_mask is None:
        return pos, pos.flip(1)
    pad = attention_mask == 0
    fwd = torch.sort(pad.to(torch.int8), dim=1, stable=True).indices  # real tokens in order, then pads
    length = (~pad).sum(1, keepdim=True)  # (batch, 1)
    rev = torch.where(pos < length, length - 1 - pos, pos)  # reverse the real part only
    return fwd, fwd.gather(1, rev)


def _take(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x: (batch, seq, dim) reordered along seq: out[b, t] = x[b, order[b, t]]."""
    return x.gather(1, order[..., None].expand(-1, -1, x.shape[-1]))


def _inverse(order: torch.Tensor) -> torch.Tensor:
    return torch.argsort(order, dim=1)


class _Stack(nn.Module):
    """num_layers LSTM layers, each projected to embed_dim, with residual connections above the first."""

    def __init__(self, cfg: ElmoConfig):
        super().__init__()
        self.lstms = nn.ModuleList(nn.LSTM(cfg.embed_dim, cfg.hidden_dim, batch_first=True) for _ in range(cfg.num_layers))
        self.projs = nn.ModuleList(nn.Linear(cfg.hidden_dim, cfg.embed_dim) for _ in range(cfg.num_layers))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, (lstm, proj) in enumerate(zip(self.lstms, self.projs)):
            h = proj(lstm(self.drop(x))[0])  # (batch, seq, embed)
            x = h if i == 0 else x + h
            outs.append(x)
        return outs


class ElmoLM(nn.Module):
    def __init__(self, cfg: ElmoConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.fwd = _Stack(cfg)
        self.bwd = _Stack(cfg)
        self.mix_weights = nn.Parameter(torch.zeros(cfg.num_layers + 1))
        self.gamma = nn.Parameter(torch.ones(()))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ElmoOutput:
        """input_ids: (batch, seq). attention_mask: (batch, seq), 0 = padding (left or right); an LSTM
        cannot skip a position, so each row is reordered so that its real tokens come first (in reading
        order for the forward stack, reversed for the backward one) and the padding after them."""
        e = self.embed(input_ids)  # (batch, seq, embed)
        fwd_order, bwd_order = _orders(input_ids, attention_mask)  # (batch, seq) each
        f = [_take(h, _inverse(fwd_order)) for h in self.fwd(_take(e, fwd_order))]
        b = [_take(h, _inverse(bwd_order)) for h in self.bwd(_take(e, bwd_order))]
        layers = [torch.cat([e, e], -1)] + [torch.cat([fi, bi], -1) for fi, bi in zip(f, b)]
        w = torch.softmax(self.mix_weights, 0)
        mixed = self.gamma * sum(wi * li for wi, li in zip(w, layers))
        tied = self.embed.weight  # (vocab, embed): the softmax is tied to the input embedding
        return ElmoOutput(self.drop(f[-1]) @ tied.T, self.drop(b[-1]) @ tied.T, layers, mixed)

    def loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean of the forward-LM and backward-LM cross-entropies (the training objective)."""
        fwd, bwd = lm_losses(self(input_ids), input_ids)
        return (fwd + bwd) / 2

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ElmoLM":
        cfg = ElmoConfig.load(Path(path))
        model = cls(cfg)
        state = load_file(str(Path(path) / "model.safetensors"))
        state = {k: v.float() for k, v in state.items()}
        model.load_state_dict(state)
        return model.eval()
