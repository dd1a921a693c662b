"""Compose views: each is applied to each sequence with its own probability.

Every view's output is checked against the view contract (:class:`Augmentation`),
because a view may come from a plugin: the same shape and dtype as its input,
padding (id 0) stays padding, rows stay left-padded, and ids stay in
``0..max_id``. The check is a few elementwise operations and one device sync per
view call; a view that breaks it is a :class:`~clue_fw.errors.PluginError` that
names the view, its class and its plugin.
"""

from __future__ import annotations

from typing import NoReturn

import torch
from torch import nn

from clue_fw.components import Augmentation, AugmentationSpec, BuildContext, PairingView
from clue_fw.errors import PluginError
from clue_fw.provenance import plugin_call


class ViewPipeline(Augmentation):
    """Apply ``views`` in order; view ``i`` changes a given row with ``probabilities[i]``.

    Each call draws fresh randomness from the generator, so two calls on the same
    batch (the two branches of a positive pair) are independent. ``kinds`` name the
    views in errors; ``max_id`` is the largest id a view may write (the ``[MASK]``
    id), when known.
    """

    def __init__(
        self,
        views: list[Augmentation],
        probabilities: list[float],
        kinds: list[str] | None = None,
        max_id: int | None = None,
    ) -> None:
        super().__init__()
        if len(views) != len(probabilities):
            raise ValueError("one probability per view")
        late = [i for i, view in enumerate(views) if i > 0 and isinstance(view, PairingView)]
        if late:
            raise ValueError(
                f"view {late[0]} ({type(views[late[0]]).__name__}) makes the two branches of a "
                "pair, so it must be the first view of the list (its spec should set "
                "pairs = True, which makes recipes check this)"
            )
        self.views = nn.ModuleList(views)
        self.probabilities = list(probabilities)
        self.kinds = list(kinds) if kinds is not None else [type(v).__name__ for v in views]
        self.max_id = max_id
        # The values a built-in view writes are proven by its property tests; only views
        # from elsewhere (plugins) pay for the value check, a host sync per call.
        self.trusted = [type(view).__module__.startswith(BUILTIN_MODULES) for view in views]

    @classmethod
    def from_specs(cls, specs: list[AugmentationSpec], context: BuildContext) -> ViewPipeline:
        """The pipeline a recipe's ``pretrain.views`` list describes."""
        return cls(
            [spec.build(context) for spec in specs],
            [spec.probability for spec in specs],
            [spec.kind for spec in specs],
            context.mask_id,
        )

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._through(items, generator, start=0)

    def pair(
        self, items: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branches of a positive pair. Without a pairing view: two independent
        calls. With one (first in the list, say ``split``): it divides each row between
        the branches (a row it does not change, at its ``probability``, goes whole to
        both), and the views after it change each branch on its own."""
        if not (self.views and isinstance(self.views[0], PairingView)):
            return self._through(items, generator, 0), self._through(items, generator, 0)
        first, second = items, items
        if self.probabilities[0] > 0.0:
            with plugin_call(self.views[0], "split"):
                parts = self.views[0].split(items, generator)
            if not (isinstance(parts, tuple) and len(parts) == 2):
                self._raise(0, f"its split returned {type(parts).__name__}, not two tensors")
            for part in parts:
                self._check(0, items, part)
            first, second = parts
            if self.probabilities[0] < 1.0:
                rows = torch.rand(items.shape[0], generator=generator, device=items.device)
                chosen = (rows < self.probabilities[0]).unsqueeze(1)
                first = torch.where(chosen, first, items)
                second = torch.where(chosen, second, items)
        return self._through(first, generator, 1), self._through(second, generator, 1)

    def _through(self, items: torch.Tensor, generator: torch.Generator, start: int) -> torch.Tensor:
        """``items`` through the views from index ``start`` on."""
        for index, (view, probability) in enumerate(
            zip(self.views, self.probabilities, strict=True)
        ):
            if index < start or probability <= 0.0:
                continue
            with plugin_call(view, "forward"):
                changed = view(items, generator)
            self._check(index, items, changed)
            if probability < 1.0:
                rows = torch.rand(items.shape[0], generator=generator, device=items.device)
                changed = torch.where((rows < probability).unsqueeze(1), changed, items)
            items = changed
        return items

    def _check(self, index: int, items: torch.Tensor, out: object) -> None:
        """Raise PluginError when view ``index`` turned ``items`` into a bad ``out``
        (shape, dtype and device always; values unless the view is a built-in one)."""
        if self.trusted[index]:
            problem = view_shape_problem(items, out)
        else:
            problem = view_output_problem(items, out, self.max_id)
        if problem:
            self._raise(index, problem)

    def _raise(self, index: int, problem: str) -> NoReturn:
        from clue_fw.provenance import describe_component

        view = self.views[index]
        raise PluginError(
            f"View {self.kinds[index]!r} ({describe_component(view)}) broke the view "
            f"contract: {problem}. A view returns a tensor of its input's shape and dtype "
            "in which padding (id 0) stays padding and rows stay left-padded"
            + (f", with ids in 0..{self.max_id}." if self.max_id is not None else ".")
        )


#: Modules whose views are the framework's own (see ``ViewPipeline.trusted``).
BUILTIN_MODULES = ("clue_fw.augmentations.",)


def view_shape_problem(items: torch.Tensor, out: object) -> str | None:
    """What is wrong with ``out``'s type, shape, dtype or device as a view of ``items``
    (no device sync), or None."""
    if not isinstance(out, torch.Tensor):
        return f"it returned {type(out).__name__}, not a tensor"
    if out.shape != items.shape or out.dtype != items.dtype:
        return (
            f"for items of shape {list(items.shape)} ({items.dtype}) it returned shape "
            f"{list(out.shape)} ({out.dtype})"
        )
    if out.device != items.device:
        return f"it moved the batch from {items.device} to {out.device}"
    return None


def view_output_problem(items: torch.Tensor, out: object, max_id: int | None) -> str | None:
    """What is wrong with ``out`` as a view of the left-padded batch ``items``, or None."""
    problem = view_shape_problem(items, out)
    if problem or not isinstance(out, torch.Tensor):
        return problem
    real_in, real_out = items != 0, out != 0
    fills_padding = (real_out & ~real_in).any()
    # A gap (an item, then padding) in a row that had none: no longer left-padded.
    gap_in = (real_in[:, :-1] & ~real_in[:, 1:]).any(dim=1)
    gap_out = (real_out[:, :-1] & ~real_out[:, 1:]).any(dim=1)
    breaks_padding = (gap_out & ~gap_in).any()
    out_of_range = (out < 0).any() if max_id is None else ((out < 0) | (out > max_id)).any()
    flags = torch.stack([fills_padding, breaks_padding, out_of_range]).tolist()  # one sync
    if flags[0]:
        return "it wrote an item into a padding position (id 0 must stay 0)"
    if flags[1]:
        return "its rows are no longer left-padded (padding after a real item)"
    if flags[2]:
        bound = f"0..{max_id}" if max_id is not None else "non-negative"
        return f"it wrote ids outside {bound}"
    return None
