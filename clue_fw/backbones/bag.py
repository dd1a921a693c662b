"""Order-agnostic bag-of-items backbones: DeepFM and NFM (CLUE Table II baselines).

Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction", IJCAI 2017; He and Chua, "Neural Factorization Machines for Sparse
Predictive Analytics", SIGIR 2017. CLUE "treats the user behaviour in the source
domain as features": the input sequence is a bag of item ids, and its order is ignored.

**Features.** ``items`` ``[B, n]`` are left-padded ids (0 = padding). Every other id,
``[MASK]`` (``num_items + 1``) included, is an ordinary feature id: a masking view
turns an item into a learned "unknown item" feature rather than deleting it (deleting
would make masking the same as item dropout). Each feature id ``a`` in a row gets the
value ``x_a = count_a / |bag|``, ``|bag|`` = the number of non-padding positions:
Rendle's normalisation of an implicit set feature, whose values sum to 1. Per position
``i`` this is ``x_i = 1 / |bag|``, summed over the positions holding the same id. A
row of padding only has no features: its user vector is exactly zero (finite, also in
backward).

**Late fusion of the candidate.** In DeepFM/NFM the target (a class or a target item)
is one more input field. Here it is not an input: every downstream head scores a
candidate ``c`` as ``score_c = W_c . u + b_c`` on the user vector ``u`` ``[B, d]``. Each
model is therefore rewritten so that everything that depends on the candidate is a
dot product with ``W_c``; terms that do not depend on ``c`` shift all scores equally
and cancel in the softmax; the candidate's first-order weight ``w_c`` is ``b_c``. With
the next-item head's ``tie_weights: true``, ``W_c`` is the candidate's own row
``v_c`` of the shared item embedding, exactly as in an FM whose candidate field
shares ``V`` with the history field.

**Outputs.** ``states`` ``[B, n, d]`` are the item embeddings ``v_i`` of the input
(zeros at padding): there is no contextual per-position state in a bag model, so
objectives or heads that predict from ``states`` (masked-item pre-training, the
next-item head's ``loss_positions: all``) see no context. Use ``loss_positions: ur``
for these baselines. ``user`` ``[B, d]`` is ``u`` below.

**No [UR] token.** A pooled model has no read-out step, so the ``user_token``
parameter that :meth:`SequenceEncoder.init_vocabulary` creates is removed: an unused
parameter would never get a gradient, would sit in optimiser state and checkpoints as
dead weight, and fails the check that every parameter is trained.

Example (``[B, n]`` item ids in, a ``[B, d]`` user vector and ``[B, n, d]`` states out):

>>> import torch
>>> from clue_fw.backbones.specs import ItemMeanSpec
>>> from clue_fw.specs import BuildContext
>>> encoder = ItemMeanSpec(dim=16).build(BuildContext(num_items=50, max_len=8))
>>> out = encoder(torch.randint(1, 51, (4, 8)))
>>> tuple(out.user.shape), tuple(out.states.shape)
((4, 16), (4, 8, 16))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.backbones.dropout import Dropout
from clue_fw.backbones.specs import DeepFMSpec as DeepFMSpec
from clue_fw.backbones.specs import ItemMeanSpec as ItemMeanSpec
from clue_fw.backbones.specs import NFMSpec as NFMSpec
from clue_fw.backbones.specs import positive_sizes as positive_sizes
from clue_fw.components import EncoderOutput, SequenceEncoder


def bag_values(items: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` per-position feature values ``1 / |bag|`` (0 at padding and in empty rows)."""
    real = (items != 0).float()
    return real / real.sum(dim=1, keepdim=True).clamp(min=1.0)


def id_multiplicity(items: torch.Tensor) -> torch.Tensor:
    """``[B, n]``: how many positions of the row hold the id at each position (0 at padding)."""
    same = (items.unsqueeze(2) == items.unsqueeze(1)) & (items != 0).unsqueeze(1)
    return same.sum(dim=2) * (items != 0)


def bi_interaction(items: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """NFM's Bi-Interaction pooling of a bag ``[B, d]``: ``sum_{a<b} x_a x_b v_a * v_b``.

    ``a, b`` run over the distinct ids of the row (``x_a = count_a / |bag|``), computed
    in linear time as ``1/2 [(sum_a x_a v_a)^2 - sum_a (x_a v_a)^2]``. A repeated id does
    not interact with itself (a feature never does in an FM): ``sum_a (x_a v_a)^2`` is
    ``sum_i x_i^2 count_i v_i^2`` over positions ``i``. ``embedded``: ``[B, n, d]`` ``v_i``.
    """
    x = bag_values(items)
    pooled = (x.unsqueeze(-1) * embedded).sum(dim=1)
    weight = x.square() * id_multiplicity(items)
    squares = (weight.unsqueeze(-1) * embedded.square()).sum(dim=1)
    return 0.5 * (pooled.square() - squares)


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that uses its running statistics for a training batch of one row
    (batch statistics do not exist there; plain BatchNorm1d raises)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def mlp(dim: int, hidden: list[int], dropout: float, batch_norm: bool = False) -> nn.Sequential:
    """``dim -> hidden... -> dim``: Linear, [BatchNorm], ReLU, Dropout per hidden layer,
    then a linear projection back to ``dim`` (a single Linear when ``hidden`` is empty)."""
    layers: list[nn.Module] = []
    width = dim
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(SafeBatchNorm1d(size))
        layers += [nn.ReLU(), Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, dim))
    return nn.Sequential(*layers)


class BagEncoder(SequenceEncoder):
    """Shared parts: the vocabulary (without [UR]), the length check, ``x`` and ``v``."""

    def __init__(
        self, num_items: int, max_len: int, dim: int, init_std: float | None = None
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        del self.user_token  # no [UR] read-out in a pooled model (module docstring)
        # Unit-scale rows keep sum_i x_i v_i and the Bi-Interaction out of the tiny
        # regime an FM-style std of 0.01 gives, so the MLPs start with a usable signal.
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5 if init_std is None else init_std)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def embed(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``v`` ``[B, n, d]`` (zeros at padding), ``x`` ``[B, n]`` and ``has_items`` ``[B, 1]``."""
        self.check_length(items)
        real = items != 0
        embedded = self.item_embedding(items) * real.unsqueeze(-1)
        return embedded, bag_values(items), real.any(dim=1, keepdim=True)


class ItemMeanEncoder(BagEncoder):
    """``u = sum_i x_i v_i``: the mean of the bag's item embeddings, nothing else.

    The user tower of YouTube's DNN recommender (Covington et al., RecSys 2016, the
    averaged watch vector) without its MLP, and DeepFM's FM vector alone. Pre-trained with
    InfoNCE over split views (each branch half of a user's items), it learns item
    embeddings whose averages identify users from disjoint parts of their behaviour; on
    ML-1M its user vectors carry more profile signal than a 64-d SVD of the same items
    (``docs/results.md``, "Pre-training collapse").
    """

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``; order is ignored."""
        embedded, x, has_items = self.embed(items)
        user = (x.unsqueeze(-1) * embedded).sum(dim=1) * has_items
        return EncoderOutput(states=embedded, user=user)


class DeepFMEncoder(BagEncoder):
    """``u = u_fm + a_H``: the FM interaction vector plus the DNN output.

    FM part: the candidate field's second-order terms ``<v_c, v_a> x_a`` summed over the
    bag are ``<v_c, u_fm>`` with ``u_fm = sum_i x_i v_i`` (interactions among the bag's own
    items do not depend on ``c`` and cancel; ``w_c`` is the head bias). Deep part:
    ``a_H = MLP(e)`` on the multi-valent field's mean-pooled embedding ``e`` (DeepCTR's
    pooling of a var-len sparse feature), which with Rendle's values is ``u_fm`` again:
    FM and DNN share the embedding, as in DeepFM. DeepFM adds the two logits,
    ``y_FM + y_DNN``; with a shared candidate vector ``W_c`` that is ``W_c . (u_fm + a_H)``,
    so ``a_H``'s last layer maps to ``d`` (DeepFM's output weight, factorised through
    ``W_c``).
    """

    def __init__(
        self, num_items: int, max_len: int, dim: int, hidden: list[int], dropout: float
    ) -> None:
        super().__init__(num_items, max_len, dim)
        self.deep = mlp(dim, hidden, dropout)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``; order is ignored."""
        embedded, x, has_items = self.embed(items)
        pooled = (x.unsqueeze(-1) * embedded).sum(dim=1)
        user = (pooled + self.deep(pooled)) * has_items
        return EncoderOutput(states=embedded, user=user)


class NFMEncoder(BagEncoder):
    """``u = u_lin + z``: a first-order vector plus the Bi-Interaction network.

    NFM's first-order term ``sum_a w_a x_a`` becomes, for a candidate ``c``, a weight
    ``w_{c,a}`` per (candidate, item) pair; factorising it with rank ``d`` as
    ``W_c . w_a`` gives ``u_lin = sum_i x_i w_i`` with a second table ``w``
    ``[num_items + 2, d]`` (zero-initialised, as NFM's feature biases). Interaction
    part: ``z = P . MLP(dropout(BN(f_BI)))`` with ``f_BI`` = :func:`bi_interaction`;
    NFM's final vector ``h`` becomes the per-candidate ``P^T W_c`` (``P`` the last
    ``Linear(hidden[-1], d)``). NFM's global bias ``w_0`` cancels in the softmax.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int,
        hidden: list[int],
        bi_dropout: float,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        super().__init__(num_items, max_len, dim)
        self.linear = nn.Embedding(num_items + 2, dim, padding_idx=0)
        nn.init.zeros_(self.linear.weight)
        self.bi_norm = SafeBatchNorm1d(dim) if batch_norm else nn.Identity()
        self.bi_dropout = Dropout(bi_dropout)
        self.deep = mlp(dim, hidden, dropout, batch_norm)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``; order is ignored."""
        embedded, x, has_items = self.embed(items)
        first_order = (x.unsqueeze(-1) * self.linear(items)).sum(dim=1)
        interaction = self.bi_dropout(self.bi_norm(bi_interaction(items, embedded)))
        user = (first_order + self.deep(interaction)) * has_items
        return EncoderOutput(states=embedded, user=user)
