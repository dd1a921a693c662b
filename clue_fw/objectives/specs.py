"""The specs of the built-in pre-training objectives: what ``pretrain.objective`` says.

Free of torch, so that reading a recipe does not import it. Each spec's ``build`` imports
its objective, where the loss and its paper are described: :mod:`clue_fw.objectives.clue`,
:mod:`~clue_fw.objectives.infonce` and :mod:`~clue_fw.objectives.masked_item`
(``none``, CLUEZero, builds nothing). Each of those modules re-exports its spec.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_serializer

from clue_fw.item_softmax_options import ItemSoftmaxOptions
from clue_fw.memory import FLOAT_BYTES, Part, StepSizes
from clue_fw.spec_dumps import drop_defaults
from clue_fw.specs import BuildContext, ObjectiveSpec

if TYPE_CHECKING:
    from clue_fw.components import PretrainObjective, SequenceEncoder
    from clue_fw.objectives.clue import ClueObjective
    from clue_fw.objectives.infonce import InfoNceObjective
    from clue_fw.objectives.masked_item import MaskedItemObjective


SPREAD_DEFAULTS = {"variance_weight": 0.0, "covariance_weight": 0.0}
"""The spread terms' weights in the paper's form of CLUE (off)."""
UNDUMPED_DEFAULTS = {**SPREAD_DEFAULTS, "batchnorm": "global"}
"""Fields left out of a recipe's dump while at these values, so that recipes written
before the fields existed keep their sha256 (and their runs still resume)."""


class ClueSpec(ObjectiveSpec):
    """CLUE: SimSiam-style asymmetric objective (projector, predictor, stop-gradient)."""

    kind: Literal["clue"] = "clue"
    min_batch_size: ClassVar[int] = 2
    """The projector and predictor use BatchNorm, which needs two rows for batch
    statistics; the recipe validator refuses a smaller ``pretrain.train.batch_size``."""
    projector_dim: int = Field(
        256, gt=0, description="Hidden and output size of the 3-layer BN projector."
    )
    predictor_dim: int = Field(
        64, gt=0, description="Bottleneck size of the 2-layer predictor (SimSiam: 1/4)."
    )
    predictor: bool = Field(
        True, description="Use the predictor on the student branch (off: collapse ablation)."
    )
    stop_gradient: bool = Field(
        True, description="Stop gradients through the target branch (off: collapse ablation)."
    )
    variance_weight: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Weight of VICReg's variance hinge on the encoder's user vectors (each "
        "dimension's batch std pushed up to 1). 0: the paper's SimSiam form, whose vectors "
        "collapse on ML-1M (docs/results.md, collapse).",
    )
    covariance_weight: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Weight of VICReg's covariance term on the encoder's user vectors (squared "
        "off-diagonal batch covariances / dim). 0: the paper's form.",
    )

    batchnorm: Literal["global", "local"] = Field(
        "global",
        description="Data-parallel runs only: the BatchNorm statistics of the projector and "
        "predictor. global: over the whole global batch, as one process computes them (one "
        "all-reduce per layer and step; SimSiam's synchronised BatchNorm). local: over each "
        "process's own rows, with no communication in the forward pass (MoCo's per-GPU "
        "BatchNorm); the statistics then come from batch / processes rows. One process: no "
        "difference.",
    )

    @model_serializer(mode="wrap")
    def _without_defaults_added_later(self, handler: Any) -> Any:
        """No spread or batchnorm keys at their defaults: recipes of the paper's form keep
        the recipe sha256 they had before the options existed, so their runs still resume."""
        return drop_defaults(handler(self), self, UNDUMPED_DEFAULTS)

    def global_batchnorm(self) -> bool:
        return self.batchnorm == "global"

    def encoder_batch(self, batch: int) -> int:
        """Both views go through the encoder in one pass."""
        return 2 * batch

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> ClueObjective:
        from clue_fw.objectives.clue import ClueObjective

        return ClueObjective(
            encoder_dim=encoder.dim,
            projector_dim=self.projector_dim,
            predictor_dim=self.predictor_dim,
            use_predictor=self.predictor,
            stop_gradient=self.stop_gradient,
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
        )


class InfoNceSpec(ObjectiveSpec):
    """InfoNCE between two views with in-batch negatives (CL4SRec, DuoRec)."""

    kind: Literal["infonce"] = "infonce"
    min_batch_size: ClassVar[int] = 2
    """With one sequence a batch there is no negative, and the loss is zero."""
    temperature: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Softmax temperature tau of the similarities (DuoRec, CL4SRec: 1.0).",
    )
    similarity: Literal["dot", "cosine"] = Field(
        "dot",
        description="'dot': inner product of the user vectors (DuoRec, CL4SRec); 'cosine': "
        "of their l2-normalised copies (SimCLR; pair it with a temperature such as 0.1).",
    )

    def encoder_batch(self, batch: int) -> int:
        """Both views go through the encoder in one pass."""
        return 2 * batch

    def step_parts(self, sizes: StepSizes) -> list[Part]:
        """The ``2B x 2B`` similarity matrix (logits, softmax and gradient: 3 copies)."""
        rows = 2 * sizes.batch
        what = f"view similarities ({rows:,}^2 x 3 x 4 B)"
        return [Part(what, 3 * rows * rows * FLOAT_BYTES, (sizes.batch_field,))]

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> InfoNceObjective:
        from clue_fw.objectives.infonce import InfoNceObjective

        return InfoNceObjective(self.temperature, self.similarity)


class MaskedItemSpec(ObjectiveSpec, ItemSoftmaxOptions):
    """Masked-item (cloze) prediction over all items, PeterRec / BERT4Rec style."""

    kind: Literal["masked_item"] = "masked_item"
    rho: float = Field(
        0.2, gt=0.0, le=1.0, description="Proportion of real items replaced by [MASK]."
    )

    def position_states_use(self, where: str) -> str | None:
        return (
            f"{where} {self.kind!r} predicts each masked item from the state at its position; "
            "use an objective that reads user vectors there (clue, infonce)"
        )

    def step_parts(self, sizes: StepSizes) -> list[Part]:
        """Logits of the masked positions (``rho x batch x n``, at least one a row); the
        sampled loss scores every position (unmasked ones are ignored)."""
        if self.loss == "sampled":
            rows = sizes.batch * sizes.max_len
        else:
            rows = max(sizes.batch, math.ceil(self.rho * sizes.batch * sizes.max_len))
        fields = (sizes.batch_field,)
        what = "masked-item logits"
        return [self.logits_part(what, rows, sizes.num_items, fields, "pretrain.objective")]

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> MaskedItemObjective:
        from clue_fw.objectives.masked_item import MaskedItemObjective

        return MaskedItemObjective(
            context.num_items,
            context.mask_id,
            self.rho,
            self.item_loss(context.num_items, context.item_counts),
        )


class NoPretrainingSpec(ObjectiveSpec):
    """CLUEZero: skip pre-training; fine-tuning starts from the initial encoder."""

    kind: Literal["none"] = "none"
    trains: ClassVar[bool] = False

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> PretrainObjective:
        raise RuntimeError("the `none` objective has nothing to build; the stage is skipped")
