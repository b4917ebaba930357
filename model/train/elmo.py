"""A small ELMo (Peters et al. 2018): bidirectional LSTM language models with a tied softmax and a
learned scalar mix of their layers. Token vectors come from an embedding table, or (`char_cnn=True`) from
each token's characters through a character CNN, as in ELMo itself.

A forward LSTM stack reads left to right and predicts the next token; a separate backward stack reads
right to left and predicts the previous token. Both share the token embedding and the softmax (tied to
the embedding). The contextual representation of a token at layer j is [forward_j ; backward_j]; layer 0
is the token embedding twice. A task would use gamma * sum_j softmax(s)_j * layer_j.

    >>> m = ElmoLM(ElmoConfig(vocab_size=50, embed_dim=16, hidden_dim=32, num_layers=2))
    >>> out = m(torch.randint(0, 50, (2, 7)))
    >>> out.forward_logits.shape, len(out.layers), out.layers[0].shape
    (torch.Size([2, 7, 50]), 3, torch.Size([2, 7, 32]))

With character input, every vocabulary entry's vector is computed from its UTF-8 bytes (`char_table`,
stored with the weights), so pieces that share spelling share evidence, and the softmax is tied to those
computed vectors:

    >>> cfg = ElmoConfig(vocab_size=3, embed_dim=16, hidden_dim=32, char_cnn=True)
    >>> m = ElmoLM(cfg, char_ids=char_table(["the", "Ġcat", "s"], cfg.max_chars))
    >>> m.token_table().shape, m(torch.tensor([[0, 1, 2]])).forward_logits.shape
    (torch.Size([3, 16]), torch.Size([1, 3, 3]))

Saved as a directory: `config.json` ({"model_type": "lmscope-elmo", ...}), `model.safetensors`, tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from model.errors import InputError, ModelLoadError

# Character ids: 0 pads, 1 and 2 mark a token's start and end, byte b of its UTF-8 spelling is b + 3.
CHAR_PAD, CHAR_BOW, CHAR_EOW, CHAR_VOCAB = 0, 1, 2, 259
CHAR_WIDTHS = (1, 2, 3, 4, 5)  # convolution widths over characters (ELMo: 1-7; tokens here are short)


@dataclass
class ElmoConfig:
    vocab_size: int
    embed_dim: int = 256  # token embedding and LSTM output projection size (tied softmax needs them equal)
    hidden_dim: int = 512  # LSTM cell size; projected back to embed_dim like ELMo's LSTMP cells
    num_layers: int = 2  # ELMo used 2 biLSTM layers
    dropout: float = 0.1
    max_positions: int = 512  # only for inspection limits; LSTMs have no position table
    char_cnn: bool = False  # token vectors from their characters (ELMo's char-CNN) instead of a table
    max_chars: int = 16  # characters per token the CNN reads, start and end marks included (longer: cut)
    char_dim: int = 16  # character embedding size (ELMo's)
    model_type: str = "lmscope-elmo"

    def save(self, path: Path) -> None:
        # hidden_size: the width of the contextual representations ([forward ; backward]), for model listings
        d = {**asdict(self), "hidden_size": 2 * self.embed_dim, "architectures": ["ElmoLM"]}
        (path / "config.json").write_text(json.dumps(d, indent=2))

    @classmethod
    def load(cls, path: Path) -> "ElmoConfig":
        d = json.loads((Path(path) / "config.json").read_text())
        if d.get("model_type") != "lmscope-elmo":
            raise ModelLoadError(f"{path} is not an lmscope ELMo model (model_type {d.get('model_type')!r})")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class ElmoOutput:
    forward_logits: torch.Tensor  # (batch, seq, vocab): position i predicts token i + 1
    backward_logits: torch.Tensor  # (batch, seq, vocab): position i predicts token i - 1
    layers: list[torch.Tensor]  # num_layers + 1 x (batch, seq, 2 * embed_dim)
    mixed: torch.Tensor  # (batch, seq, 2 * embed_dim) the learned scalar mix


def char_table(tokens: list[str | None], max_chars: int) -> torch.Tensor:
    """(vocab, max_chars) int64: each token's UTF-8 bytes as character ids between a start and an end
    mark, padded with 0; tokens longer than max_chars - 2 bytes are cut.

        >>> char_table(["ab", "é", None], 6).tolist()
        [[1, 100, 101, 2, 0, 0], [1, 198, 172, 2, 0, 0], [1, 2, 0, 0, 0, 0]]
    """
    out = torch.full((len(tokens), max_chars), CHAR_PAD, dtype=torch.long)
    for i, t in enumerate(tokens):
        ids = [CHAR_BOW] + [b + 3 for b in (t or "").encode("utf-8")[: max_chars - 2]] + [CHAR_EOW]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


class CharCNN(nn.Module):
    """Token vectors from characters (Kim et al. 2016, as in ELMo): character embeddings, one convolution
    per width max-pooled over the token, a highway layer, and a projection to embed_dim."""

    def __init__(self, cfg: "ElmoConfig"):
        super().__init__()
        e = cfg.embed_dim
        filters = [(w, max(8, e // 4) if w <= 2 else max(8, e // 2)) for w in CHAR_WIDTHS]  # (width, channels)
        total = sum(n for _, n in filters)
        self.chars = nn.Embedding(CHAR_VOCAB, cfg.char_dim, padding_idx=CHAR_PAD)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.char_dim, n, w) for w, n in filters)
        self.highway = nn.Linear(total, 2 * total)
        self.proj = nn.Linear(total, e)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        x = self.chars(char_ids).transpose(1, 2)  # (n, char_dim, max_chars)
        h = torch.cat([torch.relu(conv(x)).amax(-1) for conv in self.convs], -1)  # (n, total)
        t, g = self.highway(h).chunk(2, -1)  # (n, total) each
        gate = torch.sigmoid(g)
        h = gate * h + (1 - gate) * torch.relu(t)  # carry some, transform the rest
        return self.proj(h)  # (n, embed)


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
    def __init__(self, cfg: ElmoConfig, char_ids: torch.Tensor | None = None):
        """char_ids: (vocab, max_chars) from `char_table`, for `char_cnn` models (from_pretrained reads it
        from the weights)."""
        super().__init__()
        self.config = cfg
        if cfg.char_cnn:
            if cfg.max_chars < max(CHAR_WIDTHS) + 1:
                raise InputError(f"max_chars must be at least {max(CHAR_WIDTHS) + 1}, got {cfg.max_chars}")
            self.embed = None
            self.char_cnn = CharCNN(cfg)
            if char_ids is None:
                char_ids = torch.zeros(cfg.vocab_size, cfg.max_chars, dtype=torch.long)
            if tuple(char_ids.shape) != (cfg.vocab_size, cfg.max_chars):
                raise ValueError(f"char_ids must be (vocab_size, max_chars) = {(cfg.vocab_size, cfg.max_chars)}, "
                                 f"got {tuple(char_ids.shape)}")
            self.register_buffer("char_ids", char_ids.long())  # (vocab, max_chars), saved with the weights
        else:
            self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.fwd = _Stack(cfg)
        self.bwd = _Stack(cfg)
        self.mix_weights = nn.Parameter(torch.zeros(cfg.num_layers + 1))
        self.gamma = nn.Parameter(torch.ones(()))
        self.drop = nn.Dropout(cfg.dropout)

    def token_table(self) -> torch.Tensor:
        """(vocab, embed) every token's input vector (from its characters, or the embedding table); the
        softmax is tied to it."""
        return self.char_cnn(self.char_ids) if self.config.char_cnn else self.embed.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ElmoOutput:
        """input_ids: (batch, seq). attention_mask: (batch, seq), 0 = padding (left or right); an LSTM
        cannot skip a position, so each row is reordered so that its real tokens come first (in reading
        order for the forward stack, reversed for the backward one) and the padding after them."""
        table = self.token_table()  # (vocab, embed)
        e = F.embedding(input_ids, table)  # (batch, seq, embed)
        fwd_order, bwd_order = _orders(input_ids, attention_mask)  # (batch, seq) each
        f = [_take(h, _inverse(fwd_order)) for h in self.fwd(_take(e, fwd_order))]
        b = [_take(h, _inverse(bwd_order)) for h in self.bwd(_take(e, bwd_order))]
        layers = [torch.cat([e, e], -1)] + [torch.cat([fi, bi], -1) for fi, bi in zip(f, b)]
        w = torch.softmax(self.mix_weights, 0)
        mixed = self.gamma * sum(wi * li for wi, li in zip(w, layers))
        # the softmax is tied to the input vectors: (batch, seq, embed) @ (embed, vocab)
        return ElmoOutput(self.drop(f[-1]) @ table.T, self.drop(b[-1]) @ table.T, layers, mixed)

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
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # char_ids stay int64
        model.load_state_dict(state)
        return model.eval()
