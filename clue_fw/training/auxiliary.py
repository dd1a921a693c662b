"""Auxiliary contrastive terms of the fine-tuning loss (``finetune.auxiliary``).

CL4SRec (Xie et al., ICDE 2022) and DuoRec (Qiu et al., WSDM 2022) add a contrastive
term to the next-item loss; the recipe's ``finetune.auxiliary`` lists such terms, each a
pre-training objective (any registered one that trains, plugins' too), the views that
make its two branches and a weight. On every fine-tuning batch, each term's objective
runs on the sequences the head trains on (:meth:`HeadSpec.training_inputs`: the input
windows for ``next_item``), through the same encoder, and

    loss = head loss + sum_i weight_i x auxiliary loss_i.

The terms' own modules (projector, predictor) live in the fine-tuning module under
``auxiliary``: the optimiser trains them, and the checkpoints save and restore them.
The epoch log shows the head loss as ``head`` and each term's unweighted loss as
``aux.<kind>`` (``aux.<kind>.<i>`` when two terms share a kind; ``i`` is the term's
position in the list), followed by the objective's own terms (``aux.clue.z_std``).

>>> terms = AuxiliaryTerms.from_specs(recipe.finetune.auxiliary, context, encoder)  # doctest: +SKIP
>>> output = terms.add_to(head.loss(encoder, batch), encoder, inputs, generator)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import BuildContext, LossOutput, SequenceEncoder
from clue_fw.errors import PluginError
from clue_fw.memory import Part, StepSizes
from clue_fw.provenance import plugin_call

#: Prefix of the auxiliary terms' names in the epoch log (and ``history.csv``).
TERM_PREFIX = "aux."
#: The epoch log's name for the head's own loss when auxiliary terms are added to it.
HEAD_TERM = "head"

View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def term_names(kinds: Sequence[str]) -> list[str]:
    """The log names of terms of ``kinds``: ``aux.<kind>``, or ``aux.<kind>.<position>``
    for a kind listed more than once."""
    counts = Counter(kinds)
    return [
        f"{TERM_PREFIX}{kind}" if counts[kind] == 1 else f"{TERM_PREFIX}{kind}.{position}"
        for position, kind in enumerate(kinds)
    ]


def smallest_batch(terms: Sequence[Any]) -> int:
    """The smallest training batch the terms can train on: their objectives'
    ``min_batch_size`` (1 without terms). A smaller last batch of an epoch is skipped."""
    return max([1, *(term.objective.min_batch_size for term in terms)])


def encoder_rows(terms: Sequence[Any], batch: int) -> int:
    """Sequences the terms send through the encoder in a step of ``batch`` examples, on
    top of the head's own pass (each objective's ``encoder_batch``: CLUE, ``2 x batch``)."""
    return sum(term.objective.encoder_batch(batch) for term in terms)


def step_parts(terms: Sequence[Any], sizes: StepSizes) -> list[Part]:
    """The objectives' own largest tensors in a fine-tuning step (memory guard)."""
    return [part for term in terms for part in term.objective.step_parts(sizes)]


class AuxiliaryTerms(nn.Module):
    """The built terms of ``finetune.auxiliary``: one objective and one view pipeline each.

    ``objectives[i]`` with ``views[i]`` makes term ``i``, weighted by ``weights[i]`` and
    logged as ``names[i]``; ``kinds[i]`` names the objective in errors.
    """

    def __init__(
        self,
        objectives: list[nn.Module],
        views: list[ViewPipeline],
        weights: list[float],
        kinds: list[str],
    ) -> None:
        super().__init__()
        if not len(objectives) == len(views) == len(weights) == len(kinds):
            raise ValueError("one view pipeline, weight and kind per objective")
        self.objectives = nn.ModuleList(objectives)
        self.views = nn.ModuleList(views)
        self.weights = list(weights)
        self.kinds = list(kinds)
        self.names = term_names(kinds)

    @classmethod
    def from_specs(
        cls, terms: Sequence[Any], context: BuildContext, encoder: SequenceEncoder
    ) -> AuxiliaryTerms:
        """Build the recipe's ``finetune.auxiliary`` terms for ``encoder``."""
        return cls(
            [term.objective.build(context, encoder) for term in terms],
            [ViewPipeline.from_specs(term.views, context) for term in terms],
            [float(term.weight) for term in terms],
            [term.objective.kind for term in terms],
        )

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        generator: torch.Generator,
        wrap_view: Callable[[View], View] | None = None,
    ) -> LossOutput:
        """``sum_i weight_i x loss_i`` on ``items`` ``[B, n]`` and every term's log values.

        ``generator`` draws every view's randomness (term after term); ``wrap_view``
        (data-parallel: :class:`~clue_fw.distributed.GlobalView`) wraps each pipeline.
        """
        total: torch.Tensor | None = None
        terms: dict[str, torch.Tensor] = {}
        for index, (objective, views) in enumerate(zip(self.objectives, self.views, strict=True)):
            view: Any = views if wrap_view is None else wrap_view(views)
            with plugin_call(objective, "forward"):
                output = objective(encoder, items, view, generator)
            self._check(index, output)
            weighted = output.loss * self.weights[index]
            total = weighted if total is None else total + weighted
            name = self.names[index]
            terms[name] = output.loss.detach()
            for key, value in output.terms.items():
                terms[f"{name}.{key}"] = value.detach() if torch.is_tensor(value) else value
        if total is None:
            raise ValueError("no auxiliary terms to compute")
        return LossOutput(total, terms)

    def add_to(
        self,
        head_output: LossOutput,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        generator: torch.Generator,
        wrap_view: Callable[[View], View] | None = None,
    ) -> LossOutput:
        """The head's loss plus the weighted terms; the log shows the head's loss as
        ``head`` beside its own terms and the auxiliary ones."""
        head_loss = getattr(head_output, "loss", None)
        if not isinstance(head_loss, torch.Tensor):  # the training loop names the head
            return head_output
        auxiliary = self(encoder, items, generator, wrap_view)
        terms = {**head_output.terms, HEAD_TERM: head_loss.detach(), **auxiliary.terms}
        return LossOutput(head_loss + auxiliary.loss, terms)

    def _check(self, index: int, output: object) -> None:
        """Raise PluginError when term ``index``'s objective broke the loss contract."""
        from clue_fw.provenance import describe_component
        from clue_fw.training.loop import loss_output_problem

        problem = loss_output_problem(output)
        if problem:
            objective = self.objectives[index]
            raise PluginError(
                f"The {self.kinds[index]} objective of finetune.auxiliary.{index} "
                f"({describe_component(objective)}) broke the loss contract: {problem}. A "
                "loss returns LossOutput(loss, terms): a scalar floating-point tensor that "
                "depends on the trained parameters, and a dict of named scalar terms."
            )


def auxiliary_inputs(head_spec: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sequences ``head_spec``'s training ``batch`` feeds the encoder, checked."""
    items = head_spec.training_inputs(batch)
    if not isinstance(items, torch.Tensor) or items.dim() != 2 or items.is_floating_point():
        shown = (
            f"a {items.dtype} tensor of shape {list(items.shape)}"
            if isinstance(items, torch.Tensor)
            else type(items).__name__
        )
        raise PluginError(
            f"Head {head_spec.kind!r}: training_inputs returned {shown}, not the [B, n] "
            "integer item sequences its training batch feeds the encoder; finetune.auxiliary "
            "needs them."
        )
    return items
