"""S3-Rec: attribute-aware self-supervised pre-training, as a clue_fw objective plugin.

Zhou et al., "S3-Rec: Self-Supervised Learning for Sequential Recommendation with Mutual
Information Maximization", CIKM 2020, Sec. 3 (Eq. 4-9). Four objectives, each a bilinear
score ``f(x, y) = x^T W y`` (one ``W`` per objective) between an encoder output and an
item, attribute or segment representation:

* **AAP** (associated attribute prediction): the state at each unmasked position predicts
  the attributes of the item there (multi-label BCE over every attribute);
* **MIP** (masked item prediction): the state at a ``[MASK]`` position scores the item it
  hides above ``negatives`` sampled items (BCE on ``sigmoid(f(h, e+) - f(h, e-))``);
* **MAP** (masked attribute prediction): the state at a ``[MASK]`` position predicts the
  attributes of the item it hides;
* **SP** (segment prediction): the user vector of a sequence whose contiguous segment is
  masked scores the user vector of that segment (everything else masked) above the
  segments of ``negatives`` other sequences of the batch.

As in the authors' code, each term is summed over positions (AAP, MIP, MAP) or sequences
(SP); here the sums are divided by the batch size, so a term is a loss per sequence and
the paper's weights keep their meaning. Item embeddings are the backbone's own.

**Causal backbones.** The state at position t sees the items up to t: AAP is then
"item t, in its past context, -> its attributes", MIP and MAP predict a masked item from
its past (as ``masked_item`` does), and SP reads the ``[UR]`` user vector. A
bidirectional backbone would see both sides, as the paper's does; the objective is
unchanged.

The item attributes (``attributes``: a JSON object ``{"item id": [attribute, ...]}``, the
format of the S3-Rec data files; or, with ``attributes_format: movielens``, a MovieLens
``movies.dat`` whose genres are the attributes) are read when the objective is built,
through the build context's ``item_ids`` and ``data_root``.

>>> spec = S3RecSpec(attributes="Beauty/Beauty_item2attributes.json")
>>> spec.kind, spec.mip_weight, spec.mask_rate
('s3rec', 1.0, 0.2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import nn

from clue_fw import read_json_file
from clue_fw.components import (
    Augmentation,
    BuildContext,
    LossOutput,
    ObjectiveSpec,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.data.domains import read_movie_genres
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import DataError
from clue_fw.hookspecs import hookimpl
from clue_fw.objectives.masked_item import cloze_mask

FIELD = "pretrain.objective.attributes"
TERMS = ("aap", "mip", "map", "sp")


class ItemAttributes(NamedTuple):
    """Item attributes aligned with clue_fw's item ids.

    ``matrix``: ``[num_items + 2, A]`` bool, row ``i`` the attributes of item ``i`` (rows 0,
    padding, and ``num_items + 1``, ``[MASK]``, are empty). ``names``: the attribute ids
    of the file, column by column (as strings).
    """

    matrix: torch.Tensor
    names: list[str]


def read_item_attributes(
    path: Path, item_ids: np.ndarray, field: str = FIELD, file_format: str = "json"
) -> ItemAttributes:
    """Read ``{"item id": [attribute, ...]}`` for items ``1..len(item_ids)``.

    ``item_ids[i - 1]`` is item ``i``'s id in the data. Items of the file that the data
    does not hold are ignored; items without an entry get no attributes. Attributes are
    ids (integers or strings), numbered by their sorted string form. A file that is
    missing, not JSON, not of this shape, or that names no attribute of any item of the
    data is a :class:`~clue_fw.errors.DataError` naming ``field`` and the file.

    ``file_format="movielens"`` reads a MovieLens ``movies.dat`` (``MovieID::Title::A|B``)
    instead, each movie's genres its attributes (18 on ML-1M).
    """
    where = f"{field}: {path}"
    if file_format == "movielens":
        try:
            genres = read_movie_genres(path)
        except DataError as exc:
            raise DataError(f"{field}: {exc}") from None
        raw: object = {str(movie): sorted(names) for movie, names in genres.items()}
    else:
        # The core's guarded reader: a regular file under $CLUE_MAX_FILE_BYTES, UTF-8
        # JSON, no nesting or integer that would end in a traceback.
        raw = read_json_file(path, f"attribute file ({field})")
    if not isinstance(raw, dict):
        raise DataError(
            f"{where} holds a JSON {type(raw).__name__}; it must be an object mapping item "
            'ids to lists of attribute ids, e.g. {"4": [1, 2, 3]}.'
        )
    row_of = {str(item): row for row, item in enumerate(item_ids.tolist(), start=1)}
    pairs: list[tuple[int, str]] = []
    for key, values in raw.items():
        if not isinstance(values, list) or not all(
            isinstance(v, (int, str)) and not isinstance(v, bool) for v in values
        ):
            raise DataError(
                f"{where}: the attributes of item {key[:40]!r} must be a list of attribute "
                f"ids (integers or strings), not {json.dumps(values)[:60]}."
            )
        row = row_of.get(key)
        if row is not None:  # items the data does not hold are ignored
            pairs.extend((row, str(v)) for v in values)
    names = sorted({name for _, name in pairs})
    if not names:
        raise DataError(
            f"{where} names no attribute of any item in the data ({len(raw):,} entries, "
            f"{len(item_ids):,} items in the data). Check that its keys are the item ids "
            "of the sequence file."
        )
    column = {name: c for c, name in enumerate(names)}
    matrix = torch.zeros(len(item_ids) + 2, len(names), dtype=torch.bool)
    rows = torch.tensor([r for r, _ in pairs], dtype=torch.long)
    columns = torch.tensor([column[n] for _, n in pairs], dtype=torch.long)
    matrix[rows, columns] = True
    return ItemAttributes(matrix, names)


def segment_mask(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``[B, n]`` bool: one contiguous segment of real items per non-empty row.

    Its length is uniform in ``1..max(1, L // 2)`` and its start uniform among the
    places it fits (L: the row's number of items), as in the authors' code.
    """
    batch, width = items.shape
    length = (items != 0).sum(dim=1)
    longest = (length // 2).clamp(min=1)
    draw = torch.rand(batch, 2, generator=generator, device=items.device)
    size = (draw[:, 0] * longest).long().clamp(max=longest - 1) + 1
    size = torch.minimum(size, length)
    start = (draw[:, 1] * (length - size + 1)).long().clamp(min=0)
    start = torch.minimum(start, length - size) + (width - length)
    column = torch.arange(width, device=items.device).unsqueeze(0)
    return (column >= start.unsqueeze(1)) & (column < (start + size).unsqueeze(1))


def pairwise_bce(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``BCE(sigmoid(s+ - s-), 1) = softplus(s- - s+)``, averaged over the last axis of
    ``negative`` (``positive``: ``[...]``, ``negative``: ``[..., k]``)."""
    return F.softplus(negative - positive.unsqueeze(-1)).mean(dim=-1)


class S3RecObjective(PretrainObjective):
    """The four S3-Rec terms over an encoder of width ``dim`` (see the module docstring).

    >>> attributes = torch.zeros(5, 2, dtype=torch.bool)
    >>> objective = S3RecObjective(attributes, 8, 3, 4, {"aap": 1.0}, 0.2, 1)
    >>> objective.attribute_scores(torch.zeros(2, 8), "aap").shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        attributes: torch.Tensor,
        dim: int,
        num_items: int,
        mask_id: int,
        weights: dict[str, float],
        mask_rate: float,
        negatives: int,
    ) -> None:
        super().__init__()
        self.register_buffer("attributes", attributes, persistent=False)  # [V, A] bool
        self.num_items = num_items
        self.mask_id = mask_id
        self.weights = {t: w for t, w in weights.items() if w > 0}
        self.mask_rate = mask_rate
        self.negatives = negatives
        self.attribute_embedding = nn.Embedding(attributes.shape[1], dim)
        nn.init.normal_(self.attribute_embedding.weight, std=0.02)
        self.bilinear = nn.ModuleDict({t: nn.Linear(dim, dim) for t in TERMS})

    def attribute_scores(self, states: torch.Tensor, term: str) -> torch.Tensor:
        """``[..., d]`` states -> ``[..., A]`` logits ``f(h, a) = (W h) . e_a`` (AAP or MAP)."""
        return self.bilinear[term](states) @ self.attribute_embedding.weight.T

    def _attribute_loss(
        self, states: torch.Tensor, items: torch.Tensor, where: torch.Tensor, term: str
    ) -> torch.Tensor:
        """Summed multi-label BCE of the attributes of ``items`` at positions ``where``."""
        logits = self.attribute_scores(states, term)
        target = self.attributes[items].to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        return (loss * where).sum()

    def _item_loss(
        self,
        encoder: SequenceEncoder,
        states: torch.Tensor,
        items: torch.Tensor,
        masked: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """MIP: the masked item above ``negatives`` uniformly drawn other items, summed."""
        shape = (*items.shape, self.negatives)
        drawn = torch.randint(
            1, self.num_items + 1, shape, generator=generator, device=items.device
        )
        # a draw of the positive itself becomes the next item id (still uniform elsewhere)
        same = drawn == items.unsqueeze(-1)
        drawn = torch.where(same, drawn % self.num_items + 1, drawn)
        query = self.bilinear["mip"](states)
        positive = (query * encoder.item_embedding(items)).sum(-1)
        negative = (query.unsqueeze(-2) * encoder.item_embedding(drawn)).sum(-1)
        return (pairwise_bce(positive, negative) * masked).sum()

    def _segment_loss(
        self, context: torch.Tensor, segments: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """SP: each row's segment above the segments of ``negatives`` other rows, summed."""
        batch = context.shape[0]
        shifts = range(1, min(self.negatives, batch - 1) + 1)
        query = self.bilinear["sp"](context)
        positive = (query * segments).sum(-1)
        negative = torch.stack([(query * segments.roll(s, dims=0)).sum(-1) for s in shifts], -1)
        return (pairwise_bce(positive, negative) * rows).sum()

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        """``items`` ``[B, n]`` -> the weighted sum of the terms; ``view`` is not used
        (masking is this objective's own corruption)."""
        batch = items.shape[0]
        real = items != 0
        masked = cloze_mask(items, self.mask_rate, generator)
        mask = torch.full_like(items, self.mask_id)
        inputs = [torch.where(masked, mask, items)]
        if "sp" in self.weights:
            segment = segment_mask(items, generator)
            inputs.append(torch.where(segment, mask, items))  # the segment masked
            inputs.append(torch.where(segment | ~real, items, mask))  # only the segment kept
        output = encoder(torch.cat(inputs))  # one pass; dropout masks differ per row
        states = output.states[:batch]
        terms: dict[str, torch.Tensor] = {}
        if "aap" in self.weights:
            terms["aap"] = self._attribute_loss(states, items, real & ~masked, "aap")
        if "map" in self.weights:
            terms["map"] = self._attribute_loss(states, items, masked, "map")
        if "mip" in self.weights:
            terms["mip"] = self._item_loss(encoder, states, items, masked, generator)
        if "sp" in self.weights:
            context, segments = output.user[batch:].chunk(2)
            terms["sp"] = self._segment_loss(context, segments, real.any(dim=1))
        terms = {name: value / batch for name, value in terms.items()}
        loss = sum(self.weights[name] * value for name, value in terms.items())
        assert isinstance(loss, torch.Tensor)
        return LossOutput(loss, {name: value.detach() for name, value in terms.items()})


class S3RecSpec(ObjectiveSpec):
    """S3-Rec pre-training (AAP, MIP, MAP, SP) with item attributes; Zhou et al., CIKM 2020."""

    kind: Literal["s3rec"] = "s3rec"
    attributes: str = Field(
        "Beauty/Beauty_item2attributes.json",
        min_length=1,
        description=(
            'Item attributes: a JSON object {"item id": [attribute id, ...]} (or a '
            "MovieLens movies.dat, with attributes_format: movielens), relative to the data "
            "root. Items it does not name get no attributes."
        ),
    )
    attributes_format: Literal["json", "movielens"] = Field(
        "json",
        description="'json': the S3-Rec attribute file above; 'movielens': a MovieLens "
        "movies.dat (MovieID::Title::Genres), each movie's genres its attributes (e.g. "
        "attributes: ml-1m/movies.dat).",
    )
    aap_weight: float = Field(0.2, ge=0.0, description="Weight of AAP (item -> attributes).")
    mip_weight: float = Field(1.0, ge=0.0, description="Weight of MIP (masked item).")
    map_weight: float = Field(1.0, ge=0.0, description="Weight of MAP (masked item's attributes).")
    sp_weight: float = Field(0.5, ge=0.0, description="Weight of SP (masked segment).")
    mask_rate: float = Field(
        0.2, gt=0.0, lt=1.0, description="Proportion of items masked for MIP and MAP."
    )
    negatives: int = Field(
        1,
        ge=1,
        le=1024,
        description=(
            "Negatives per positive: uniformly drawn items per masked item (MIP) and "
            "segments of other sequences of the batch per sequence (SP)."
        ),
    )

    #: SP contrasts a sequence's segment with other sequences' segments.
    min_batch_size: ClassVar[int] = 2

    @model_validator(mode="after")
    def _some_term(self) -> S3RecSpec:
        if not any(getattr(self, f"{t}_weight") > 0 for t in TERMS):
            raise ValueError(
                "every term weight is 0, so there is nothing to train; give at least one of "
                "aap_weight, mip_weight, map_weight, sp_weight a positive value."
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_format(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Leave the default ``attributes_format: json`` out of dumps: a recipe that does
        not set it keeps the recipe sha256 (and run identity) it had before the field."""
        data: dict[str, object] = handler(self)
        if self.attributes_format == "json":
            data.pop("attributes_format", None)
        return data

    def position_states_use(self, where: str) -> str | None:
        """AAP, MIP and MAP read the state at each position; SP reads user vectors only."""
        terms = [t.upper() for t in ("aap", "mip", "map") if getattr(self, f"{t}_weight") > 0]
        if not terms:
            return None
        return (
            f"{where} 's3rec' reads the state at each position for {', '.join(terms)}; set "
            f"{where}.aap_weight, mip_weight and map_weight to 0 to keep SP only, which reads "
            "user vectors"
        )

    def encoder_batch(self, batch: int) -> int:
        """The masked sequences, and with SP the segment-masked ones and the segments."""
        return 3 * batch if self.sp_weight > 0 else batch

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> S3RecObjective:
        if context.item_ids is None:
            raise ValueError(
                "s3rec reads item attributes by the data's item ids, but the build context "
                "has none: build it with BuildContext(..., item_ids=data.item_ids)."
            )
        try:
            path = resolve_data_path(self.attributes, context.data_root, FIELD)
        except DataError as exc:
            raise DataError(f"{FIELD}: {exc}") from None
        attributes = read_item_attributes(
            path, context.item_ids, file_format=self.attributes_format
        )
        weights = {t: float(getattr(self, f"{t}_weight")) for t in TERMS}
        return S3RecObjective(
            attributes.matrix,
            encoder.dim,
            context.num_items,
            context.mask_id,
            weights,
            self.mask_rate,
            self.negatives,
        )

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, object]:
        """Three attributes for each item of ``data`` (``clue_fw.testing``'s checks)."""
        table = {str(i): [i % 4, 4 + i % 3, "shared"] for i in data.item_ids.tolist()}
        (root / "item_attributes.json").write_text(json.dumps(table))
        return {"attributes": "item_attributes.json"}


@hookimpl
def clue_register_objectives() -> list[type[ObjectiveSpec]]:
    return [S3RecSpec]


__all__ = [
    "ItemAttributes",
    "S3RecObjective",
    "S3RecSpec",
    "pairwise_bce",
    "read_item_attributes",
    "segment_mask",
]
