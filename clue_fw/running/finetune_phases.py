"""What trains in each epoch of fine-tuning, and at which learning rate.

``finetune.mode`` splits the epochs into phases, decided here and nowhere else:

- ``full``: every epoch trains every parameter (the ``full`` phase).
- ``probe``: every epoch trains the head alone (the ``probe`` phase). The encoder is
  frozen: no gradients, eval mode (no dropout; BatchNorm keeps its statistics), and it is
  not in the optimiser at all.
- ``probe_then_full`` (LP-FT: Kumar et al., "Fine-Tuning can Distort Pretrained
  Features and Underperform Out-of-Distribution", ICLR 2022): epochs
  ``1 .. probe_epochs`` are the probe phase, frozen exactly as ``probe`` freezes, and
  the later ones the full phase. The optimiser holds the encoder's parameters from the
  start; while frozen they get no gradient, so no update, no weight decay and no optimiser
  state (Adam's moments of the encoder start when it unfreezes).

The phase of an epoch is a function of its number, so a resumed run continues in the
right phase. One learning-rate schedule spans both phases (planned over
``train.epochs``).

Early stopping: ``patience`` counts only epochs in which the encoder trains. In LP-FT the
counter therefore stands at 0 when the encoder unfreezes: a probe that stopped gaining
cannot end the run before the encoder has trained, nor at the first epoch after the
switch. The best checkpoint is chosen over every epoch of both phases, so LP-FT keeps
the probe's weights when full fine-tuning never beats them on validation.

``finetune.encoder_lr_scale``: the encoder's parameters (backbone and item embeddings:
what pre-training or ``init_from`` gave) form their own optimiser group at
``lr x encoder_lr_scale``; the head and auxiliary terms train at ``lr``
(:class:`~clue_fw.training.optim.ParameterGroup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from torch import nn

from clue_fw.components import SequenceEncoder
from clue_fw.training.optim import ParameterGroup

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import FinetuneStageLike

Phase = Literal["probe", "full"]


@dataclass(frozen=True)
class Phases:
    """The phases of a fine-tuning stage: epochs ``1 .. frozen_epochs`` train the head on
    the frozen encoder, the later ones everything; ``unfreezes``: the encoder trains
    after them (LP-FT), rather than never (``probe``)."""

    frozen_epochs: int
    unfreezes: bool

    @classmethod
    def of(cls, spec: FinetuneStageLike) -> Phases:
        """The phases ``spec`` (a validated ``finetune`` section) asks for."""
        if spec.mode == "probe":
            return cls(spec.train.epochs, unfreezes=False)
        if spec.mode == "probe_then_full":
            return cls(spec.probe_epochs or 0, unfreezes=True)
        return cls(0, unfreezes=False)

    def phase(self, epoch: int) -> Phase:
        """``probe`` or ``full``: what epoch ``epoch`` (1-based) trains."""
        return "probe" if epoch <= self.frozen_epochs else "full"

    @property
    def encoder_trains(self) -> bool:
        """Whether the encoder trains in any epoch (so it belongs in the optimiser)."""
        return self.frozen_epochs == 0 or self.unfreezes

    def counts_towards_patience(self, epoch: int) -> bool:
        """Whether an epoch without a gain brings early stopping closer: every epoch,
        except the probe phase of LP-FT (see the module's notes)."""
        return not (self.unfreezes and epoch <= self.frozen_epochs)

    @property
    def shows_phase(self) -> bool:
        """Whether history rows name their phase (only LP-FT has two)."""
        return self.unfreezes

    def describe(self) -> str:
        """What a run's log says of the phases."""
        if self.unfreezes:
            return (
                f"LP-FT: epochs 1-{self.frozen_epochs} train the head on the frozen encoder, "
                "then every parameter trains"
            )
        return "linear probe of a frozen encoder" if self.frozen_epochs else "full fine-tuning"

    def status(self, epoch: int) -> str | None:
        """The probe phase of LP-FT as a terminal's validation line ends it; None after it
        (and in the other modes), where early stopping says when it stops."""
        if not self.unfreezes or epoch > self.frozen_epochs:
            return None
        if epoch == self.frozen_epochs:
            return "the encoder unfreezes now; early stopping counts from the next epoch"
        return f"probe phase: the encoder unfreezes after epoch {self.frozen_epochs}"


class EncoderFreeze:
    """Freezes the encoder for the probe phase and unfreezes it for the full phase.

    It acts on the encoder parameters that required a gradient when fine-tuning began
    (a backbone's own frozen parameters stay frozen), and on train/eval mode.
    """

    def __init__(self, module: nn.Module, encoder: SequenceEncoder) -> None:
        self.module = module
        self.encoder = encoder
        self.parameters = [p for p in encoder.parameters() if p.requires_grad]

    def enter(self, phase: Phase) -> None:
        """Train everything (``full``) or the rest of ``module`` on a frozen encoder in
        eval mode (``probe``)."""
        for parameter in self.parameters:
            parameter.requires_grad_(phase == "full")
        self.module.train()
        if phase == "probe":
            self.encoder.eval()  # a frozen encoder: no dropout, representation as evaluated


def optimiser_parameters(
    module: nn.Module, encoder: SequenceEncoder, phases: Phases, encoder_lr_scale: float
) -> list[nn.Parameter] | list[ParameterGroup]:
    """What the fine-tuning optimiser trains: the parameters of ``module`` that require a
    gradient, without the encoder's when it never trains (``probe``), in ``module``'s
    order. At ``encoder_lr_scale`` 1 they are one list, the one group every earlier version
    built (so its runs still resume); otherwise two groups, the encoder's at that factor
    and the rest (head, auxiliary terms) at 1, an empty one left out.
    """
    mine = {id(p) for p in encoder.parameters()}
    trainable = [
        p
        for p in module.parameters()
        if p.requires_grad and (phases.encoder_trains or id(p) not in mine)
    ]
    if encoder_lr_scale == 1.0:
        return trainable
    groups = [
        ParameterGroup([p for p in trainable if id(p) in mine], encoder_lr_scale),
        ParameterGroup([p for p in trainable if id(p) not in mine]),
    ]
    return [group for group in groups if group.parameters]
