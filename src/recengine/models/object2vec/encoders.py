"""The Object2Vec network: two token encoders, a comparator and an MLP, as a :class:`PairNet`.

Following SageMaker's Object2Vec: enc0 embeds the user side's tokens, enc1 the item side's, each a
``pooled_embedding`` (mean of token embeddings, then a projection to ``enc_dim``), an ``hcnn``
(stacked 1-D convolutions over the token sequence, max-pooled over positions) or a ``bilstm`` (the
last states of both directions); the comparator joins the two vectors (``hadamard``, ``concat``,
``abs_diff``, in the order given) and an MLP maps the result to a rating or to class logits. With
bias terms each side also sums a 1-d embedding of its tokens, carried as the last column of the side
vector and added to the output, so the MLP models the interaction rather than the offsets.

Splitting the network at the user/item boundary (``user_side``/``item_side``/``combine``) lets the
shared PyTorch base run each encoder once per user and once per item when scoring a catalog.
Every encoder has an ``encode(x, mask)`` entry on embedded float input, which is what the gradient
checks of the tests call in float64.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from recengine.models._torch_nets import PairNet
from recengine.models.object2vec.tokens import N_RESERVED, PAD, UNK

#: Comparator entries of combine_grid per chunk: bounds the (pairs × comparator) activations.
GRID_FLOATS = 1 << 23
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}


class Encoder(nn.Module):
    """Token ids (B, L), PAD = 0 → (B, enc_dim)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, tokens: Tensor) -> Tensor:
        mask = tokens != PAD
        return self.encode(self.embedding(tokens), mask)

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, L, d) embedded tokens and a (B, L) mask of real positions → (B, enc_dim)."""
        raise NotImplementedError


class PooledEncoder(Encoder):
    """Average of the token embeddings, projected to ``enc_dim``."""

    def __init__(self, embedding: nn.Embedding, enc_dim: int) -> None:
        super().__init__(embedding)
        self.proj = nn.Linear(embedding.embedding_dim, enc_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        # One fused gather-and-mean (embedding_bag leaves PAD out of the mean), no (B, L, d) tensor.
        pooled = nn.functional.embedding_bag(
            tokens, self.embedding.weight, mode="mean", padding_idx=PAD, sparse=self.embedding.sparse
        )
        return self.proj(pooled)

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.to(x.dtype).unsqueeze(-1)
        return self.proj((x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0))


class HCNNEncoder(Encoder):
    """``layers`` 1-D convolutions (width ``filter_width``, same length; ReLU between layers, the last
    one linear so that its maximum is not clipped at zero), padding positions zeroed between layers,
    then the maximum over real positions."""

    def __init__(self, embedding: nn.Embedding, enc_dim: int, layers: int, filter_width: int) -> None:
        super().__init__(embedding)
        dims = [embedding.embedding_dim] + [enc_dim] * layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, filter_width, padding="same") for a, b in itertools.pairwise(dims)
        )

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.to(x.dtype).unsqueeze(1)  # (B, 1, L)
        h = x.transpose(1, 2) * m
        last = len(self.convs) - 1
        for k, conv in enumerate(self.convs):
            h = conv(h)
            h = (h if k == last else torch.relu(h)) * m
        return h.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(dim=2)


class BiLSTMEncoder(Encoder):
    """A bidirectional LSTM (``layers`` deep, ``enc_dim / 2`` units each way) over the real tokens;
    the output is the last state of each direction, concatenated."""

    def __init__(self, embedding: nn.Embedding, enc_dim: int, layers: int) -> None:
        super().__init__(embedding)
        self.lstm = nn.LSTM(
            embedding.embedding_dim, enc_dim // 2, num_layers=layers, bidirectional=True, batch_first=True
        )

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return torch.cat([h[-2], h[-1]], dim=1)


class Comparator(nn.Module):
    """Joins two (B, D) encodings: ``hadamard`` a⊙b, ``concat`` [a, b], ``abs_diff`` |a − b|."""

    def __init__(self, ops: Sequence[str], dim: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.out_dim = sum(2 * dim if op == "concat" else dim for op in self.ops)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        parts: list[Tensor] = []
        for op in self.ops:
            if op == "hadamard":
                parts.append(a * b)
            elif op == "concat":
                parts.extend((a, b))
            else:
                parts.append((a - b).abs())
        return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class NetSpec:
    """Everything that fixes the network's shapes (rebuilt from it when a saved model is loaded)."""

    vocab0: int
    vocab1: int
    networks: tuple[str, str]
    token_dims: tuple[int, int]
    enc_dim: int
    layers: tuple[int, int]
    filter_widths: tuple[int, int]
    tied_embedding: bool
    shared_encoder: bool
    comparator: tuple[str, ...]
    mlp_layers: int
    mlp_dim: int
    activation: str
    dropout: float
    out_dim: int
    init_std: float
    id_dropout: tuple[float, float]
    sparse: bool = False  # sparse embedding gradients (Adagrad without weight decay, or lazy Adam)
    bias: bool = False  # a 1-d "bias" embedding per token, summed per side and added to the output
    history: bool = False  # enc0 adds the pooled embeddings of the items the user rated
    history_users: int = 0  # users of the history table (the rows of its offsets, less one)
    history_items: int = 0  # items a history can hold (the rows of its embedding table)
    item_history: bool = False  # enc1 adds the pooled embeddings of the users who rated the item
    # Tied tables over one token space (JSON Lines pairs): token t is one row on both sides. Without
    # it (users and items) side 1's tokens are placed after side 0's.
    shared_vocab: bool = False
    sessions: int = 0  # rows of the session bias table (sessions + the empty row 0); 0: no sessions


def build_encoder(network: str, embedding: nn.Embedding, enc_dim: int, layers: int, width: int) -> Encoder:
    if network == "pooled_embedding":
        return PooledEncoder(embedding, enc_dim)
    if network == "hcnn":
        return HCNNEncoder(embedding, enc_dim, layers, width)
    if network == "bilstm":
        return BiLSTMEncoder(embedding, enc_dim, layers)
    raise ValueError(f"unknown encoder network {network!r}")


class Object2VecNet(PairNet):
    """enc0 over the user token table, enc1 over the item token table, comparator, MLP, output.

    With ``tied_embedding`` both sides read one token table (side-1 ids shifted past side 0's);
    with ``shared_encoder`` they also share the encoder network.
    """

    def __init__(
        self,
        spec: NetSpec,
        user_tokens: Tensor,
        item_tokens: Tensor,
        history: tuple[Tensor, Tensor] | None = None,
        item_history: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.out_dim = spec.out_dim
        self.register_buffer("user_tokens", user_tokens.clone())
        self.register_buffer("item_tokens", item_tokens.clone())
        self.offset1 = spec.vocab0 if spec.tied_embedding and not spec.shared_vocab else 0
        if spec.tied_embedding:
            rows = max(spec.vocab0, spec.vocab1) if spec.shared_vocab else spec.vocab0 + spec.vocab1
            emb0 = emb1 = self._embedding(rows, spec.token_dims[0], spec)
        else:
            emb0 = self._embedding(spec.vocab0, spec.token_dims[0], spec)
            emb1 = self._embedding(spec.vocab1, spec.token_dims[1], spec)
        self.enc0 = build_encoder(spec.networks[0], emb0, spec.enc_dim, spec.layers[0], spec.filter_widths[0])
        if spec.shared_encoder:
            self.enc1 = self.enc0
        else:
            self.enc1 = build_encoder(
                spec.networks[1], emb1, spec.enc_dim, spec.layers[1], spec.filter_widths[1]
            )
        self.comparator = Comparator(spec.comparator, spec.enc_dim)
        layers: list[nn.Module] = []
        width = self.comparator.out_dim
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        for _ in range(spec.mlp_layers):
            layers += [nn.Linear(width, spec.mlp_dim), ACTIVATIONS[spec.activation]()]
            if spec.dropout > 0:
                layers.append(nn.Dropout(spec.dropout))
            width = spec.mlp_dim
        self.mlp = nn.Sequential(*layers)
        self.output = nn.Linear(width, spec.out_dim)
        self.side_dim = spec.enc_dim + (1 if spec.bias else 0)
        if spec.bias:
            # Zero start: the model begins as the plain pair network and learns the offsets. Each side
            # sums its tokens' biases (id, genres, ...), so a new item still gets one from its content.
            self.bias0 = nn.Embedding(spec.vocab0, 1, padding_idx=PAD, sparse=spec.sparse)
            self.bias1 = nn.Embedding(spec.vocab1, 1, padding_idx=PAD, sparse=spec.sparse)
            nn.init.zeros_(self.bias0.weight)
            nn.init.zeros_(self.bias1.weight)
            # How the summed bias moves the head: a rating up by b; class logits along c - mean class,
            # which moves probability toward the higher classes (the log-odds of class 1 by b for two).
            direction = (
                torch.ones(1) if spec.out_dim == 1 else torch.arange(spec.out_dim) - (spec.out_dim - 1) / 2
            )
            self.register_buffer("bias_direction", direction.float())
        if spec.sessions:
            # A bias per session, added to the user's: how far the sitting's ratings lie from the
            # user's usual level (a vector per session, fitted on two or three ratings, overfits).
            if not spec.bias:
                raise ValueError("sessions are bias terms: a network with sessions needs bias terms")
            self.session = nn.Embedding(spec.sessions, 1, padding_idx=0, sparse=spec.sparse)
            nn.init.zeros_(self.session.weight)
        if spec.history:
            # Small start: the history refines what the id and side tokens say about a user.
            self.history = self._history_table(
                history, "a user history", "history", "items", spec.history_users, spec.history_items
            )
        if spec.item_history:
            self.item_history = self._history_table(
                item_history,
                "an item history",
                "item_history",
                "users",
                spec.history_items,
                spec.history_users,
            )

    def _history_table(
        self,
        csr: tuple[Tensor, Tensor] | None,
        label: str,
        name: str,
        members: str,
        n_rows: int,
        n_members: int,
    ) -> nn.Embedding:
        """Keep a CSR history (``<name>_offsets``, ``<name>_<members>`` buffers) and make the table
        of its members' embeddings, started small beside the id and side tokens."""
        if csr is None:
            raise ValueError(f"a network with {label} needs the history's offsets and {members}")
        offsets, ids = csr
        if offsets.shape != (n_rows + 1,):
            raise ValueError(f"{name.replace('_', ' ')} offsets must have {n_rows + 1} entries")
        self.register_buffer(f"{name}_offsets", offsets.clone())
        self.register_buffer(f"{name}_{members}", ids.clone())
        table = nn.Embedding(n_members, self.spec.enc_dim, sparse=self.spec.sparse)
        nn.init.normal_(table.weight, std=self.spec.init_std / 5)
        return table

    @staticmethod
    def _embedding(n: int, dim: int, spec: NetSpec) -> nn.Embedding:
        emb = nn.Embedding(n, dim, padding_idx=PAD, sparse=spec.sparse)
        nn.init.normal_(emb.weight, std=spec.init_std)
        with torch.no_grad():
            emb.weight[PAD].zero_()
        return emb

    # ----- the two sides ---------------------------------------------------------------------------
    def side_tokens(self, side: int, tokens: Tensor) -> Tensor:
        """Side-local token ids → the ids of that side's embedding table."""
        if side == 1 and self.offset1:
            return torch.where(tokens == PAD, tokens, tokens + self.offset1)
        return tokens

    def encode(self, side: int, tokens: Tensor) -> Tensor:
        """(B, L) side-local token ids → (B, side_dim): the encoder's output, then the side's summed
        token bias when bias terms are on; no id dropout (inference and new content)."""
        enc = self.enc0 if side == 0 else self.enc1
        out = enc(self.side_tokens(side, tokens))
        if side == 0 and self.spec.history:
            out = out + self.pooled_history(tokens[:, 0] - N_RESERVED)
        if side == 1 and self.spec.item_history:
            out = out + self.pooled_item_history(tokens[:, 0] - N_RESERVED)
        if not self.spec.bias:
            return out
        table = self.bias0 if side == 0 else self.bias1
        bias = nn.functional.embedding_bag(
            tokens, table.weight, mode="sum", padding_idx=PAD, sparse=table.sparse
        )
        return torch.cat([out, bias], dim=1)

    def pooled_history(self, users: Tensor) -> Tensor:
        """(B,) internal user ids → (B, enc_dim): the sum of the embeddings of the items each user
        rated in training, divided by the square root of their number (SVD++'s implicit feedback).
        Ids outside the table (a hidden id token, a user with no training rows) get zeros."""
        return _pooled(
            users, self.get_buffer("history_offsets"), self.get_buffer("history_items"), self.history
        )

    def pooled_item_history(self, items: Tensor) -> Tensor:
        """(B,) internal item ids → (B, enc_dim): the same over the users who rated each item (the
        "flipped" implicit feedback: an item is also known by who chose to rate it)."""
        return _pooled(
            items,
            self.get_buffer("item_history_offsets"),
            self.get_buffer("item_history_users"),
            self.item_history,
        )

    def _train_tokens(self, side: int, tokens: Tensor) -> Tensor:
        """In training, the id token of a row is replaced by UNK with probability ``id_dropout``, so that
        the content tokens (and UNK) learn to stand in for ids that new entities do not have."""
        p = self.spec.id_dropout[side]
        if not self.training or p <= 0 or tokens.shape[1] < 2:
            return tokens
        drop = (torch.rand(tokens.shape[0], device=tokens.device) < p) & (tokens[:, 0] > UNK)
        if not bool(drop.any()):
            return tokens
        tokens = tokens.clone()
        tokens[drop, 0] = UNK
        return tokens

    def user_side(self, users: Tensor) -> Tensor:
        return self.encode(0, self._train_tokens(0, self.get_buffer("user_tokens")[users]))

    def item_side(self, items: Tensor) -> Tensor:
        return self.encode(1, self._train_tokens(1, self.get_buffer("item_tokens")[items]))

    def with_context(self, u: Tensor, sessions: Tensor) -> Tensor:
        """User side vectors (B, side_dim) moved by their rows' sessions (B,); session 0 moves nothing."""
        if not self.spec.sessions:  # built without session_gap
            return super().with_context(u, sessions)
        d = self.spec.enc_dim
        return torch.cat([u[:, :d], u[:, d:] + self.session(sessions)], dim=1)

    def context_penalty(self, sessions: Tensor) -> Tensor:
        if not self.spec.sessions:
            return super().context_penalty(sessions)
        return self.session(sessions)[:, 0].pow(2)

    def vectors(self, side: Tensor) -> Tensor:
        """Side vectors without the bias column: what embeddings and cosine similarity read."""
        return side[..., : self.spec.enc_dim]

    # ----- joining them ----------------------------------------------------------------------------
    def combine(self, u: Tensor, i: Tensor) -> Tensor:
        if not self.spec.bias:
            return self.output(self.mlp(self.comparator(u, i)))
        d = self.spec.enc_dim
        out = self.output(self.mlp(self.comparator(u[:, :d], i[:, :d])))
        return out + (u[:, d:] + i[:, d:]) * self.get_buffer("bias_direction")

    def combine_grid(self, u: Tensor, i: Tensor) -> Tensor:
        """Every (user, item) pair, a few users at a time so the pair activations stay bounded."""
        b, n = u.shape[0], i.shape[0]
        cols = max(1, min(n, GRID_FLOATS // self.comparator.out_dim))
        rows = max(1, GRID_FLOATS // (cols * self.comparator.out_dim))
        out = torch.empty(b, n, self.out_dim, device=u.device, dtype=u.dtype)
        for r in range(0, b, rows):
            uu = u[r : r + rows]
            k = uu.shape[0]
            for c in range(0, n, cols):
                ii = i[c : c + cols]
                m = ii.shape[0]
                pairs = self.combine(uu.repeat_interleave(m, dim=0), ii.repeat(k, 1))
                out[r : r + k, c : c + m] = pairs.reshape(k, m, self.out_dim)
        return out


def _pooled(ids: Tensor, offsets: Tensor, members: Tensor, table: nn.Embedding) -> Tensor:
    """(B,) row ids of a CSR history (``offsets``, ``members``) → (B, dim): the sum of the members'
    embeddings over the square root of their number; ids outside the table get zeros."""
    n_rows = offsets.shape[0] - 1
    known = (ids >= 0) & (ids < n_rows)
    rows = torch.where(known, ids, torch.zeros_like(ids))
    starts = offsets[rows]
    lengths = torch.where(known, offsets[rows + 1] - starts, torch.zeros_like(starts))
    bag_starts = torch.cumsum(lengths, 0) - lengths
    total = int(lengths.sum())
    at = torch.repeat_interleave(starts - bag_starts, lengths) + torch.arange(total, device=ids.device)
    weights = torch.repeat_interleave(lengths.clamp(min=1).to(table.weight.dtype).rsqrt(), lengths)
    return nn.functional.embedding_bag(
        members[at], table.weight, bag_starts, mode="sum", per_sample_weights=weights, sparse=table.sparse
    )
