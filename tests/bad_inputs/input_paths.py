"""Helpers of the input-path cases (issue 9, part 3): special files and broken plugins.

The plugins reach clue_fw as they would in real life, through entry points: a case's
``entry_points`` replace ``importlib.metadata.entry_points`` for the ``clue_fw`` group
(``test_bad_inputs.py`` installs them, with entry-point loading switched on).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from clue_fw.components import (
    Augmentation,
    AugmentationSpec,
    BackboneSpec,
    BuildContext,
    EncoderOutput,
    LossOutput,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.hookspecs import hookimpl
from clue_fw.objectives.clue import ClueSpec

# --------------------------------------------------------------------------- special files


def write_output_to_fifo(writer: str) -> Callable[[Path], object]:
    """An api case: an output writer given a named pipe ``out.fifo`` as its target (a
    rename over it would replace the pipe; opening it would wait for a reader)."""

    def call(case_dir: Path) -> object:
        target = case_dir / "out.fifo"
        os.mkfifo(target)
        if writer == "evaluate":
            from clue_fw.cli_evaluate import _write_json

            return _write_json(str(target), "{}")
        if writer == "schema":
            from clue_fw.cli import _write_text

            return _write_text(str(target), "{}")
        if writer == "export":
            from clue_fw.inference.export import write_bytes

            return write_bytes(target, b"{}")
        from clue_fw.data.synth import write_synthetic_sequences

        return write_synthetic_sequences(target, 5, 5, overwrite=True)

    return call


def fifo(relative: str) -> Callable[[Path], None]:
    """A setup that makes ``relative`` (in the case directory) a named pipe."""

    def setup(case_dir: Path) -> None:
        path = case_dir / relative
        path.unlink(missing_ok=True)
        os.mkfifo(path)

    return setup


def link(relative: str, target: str) -> Callable[[Path], None]:
    """A setup that makes ``relative`` a symbolic link to ``target`` (e.g. /dev/zero)."""

    def setup(case_dir: Path) -> None:
        path = case_dir / relative
        path.unlink(missing_ok=True)
        path.symlink_to(target)

    return setup


def read_labels_from(relative: str) -> Callable[[Path], object]:
    def call(case_dir: Path) -> object:
        from clue_fw.data.labels import read_label_file

        return read_label_file(case_dir / relative)

    return call


def read_sequences_from(relative: str) -> Callable[[Path], object]:
    def call(case_dir: Path) -> object:
        from clue_fw.data.readers import read_sequence_file

        return read_sequence_file(case_dir / relative)

    return call


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class FakeDistribution:
    name: str
    version: str


@dataclass(frozen=True)
class FakeEntryPoint:
    """What ``importlib.metadata`` lists for an installed plugin package."""

    name: str
    plugin: Any
    dist: FakeDistribution
    value: str = "plugin_module:plugin"

    def load(self) -> Any:
        return self.plugin


def entry_point(name: str, plugin: Any, dist: str = "clue-bad-plugin") -> FakeEntryPoint:
    return FakeEntryPoint(name, plugin, FakeDistribution(dist, "0.1"), f"{dist}_module:plugin")


class RaisingPlugin:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        raise ValueError("the backbone table is corrupt")


class ArgumentPlugin:
    @hookimpl
    def clue_register_backbones(self, registry: Any) -> list[type[BackboneSpec]]:
        return []


class MisspeltHookPlugin:
    @hookimpl
    def clue_register_backbone(self) -> list[type[BackboneSpec]]:
        return []


class EmptyPlugin:
    @hookimpl
    def clue_register_heads(self) -> list[Any]:
        return []


# --------------------------------------------------------------- components that break rules


class NarrowEncoder(SequenceEncoder):
    """States of half the promised width."""

    def __init__(self, num_items: int, max_len: int, dim: int) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        states = self.item_embedding(items)
        return EncoderOutput(states[..., : self.dim // 2], states.mean(dim=1))


class NarrowSpec(BackboneSpec):
    """A backbone whose states are narrower than its dim (breaks the contract)."""

    kind: Literal["narrow"] = "narrow"
    dim: int = 16

    def build(self, context: BuildContext) -> NarrowEncoder:
        return NarrowEncoder(context.num_items, context.max_len, self.dim)


class ShrinkView(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items[:, 1:]


class ShrinkSpec(AugmentationSpec):
    """A view that drops the first column (changes the shape)."""

    kind: Literal["shrink"] = "shrink"

    def build(self, context: BuildContext) -> ShrinkView:
        return ShrinkView()


class FillView(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items + 1


class FillSpec(AugmentationSpec):
    """A view that adds 1 to every position (padding becomes item 1)."""

    kind: Literal["fill_padding"] = "fill_padding"

    def build(self, context: BuildContext) -> FillView:
        return FillView()


class TensorLossObjective(PretrainObjective):
    """CLUE, but returns the bare loss tensor instead of a LossOutput."""

    def __init__(self, inner: PretrainObjective) -> None:
        super().__init__()
        self.inner = inner

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        return self.inner(encoder, items, view, generator).loss  # type: ignore[no-any-return]


class TensorLossSpec(ClueSpec):
    """CLUE whose loss is a bare tensor (breaks the loss contract)."""

    kind: Literal["tensor_loss"] = "tensor_loss"  # type: ignore[assignment]

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> TensorLossObjective:  # type: ignore[override]
        return TensorLossObjective(super().build(context, encoder))


class BrokenComponents:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        return [NarrowSpec]

    @hookimpl
    def clue_register_augmentations(self) -> list[type[AugmentationSpec]]:
        return [ShrinkSpec, FillSpec]

    @hookimpl
    def clue_register_objectives(self) -> list[type[ClueSpec]]:
        return [TensorLossSpec]


BROKEN = (entry_point("broken", BrokenComponents(), "clue-broken-components"),)
BROKEN_PROVIDER = "clue-broken-components 0.1"


# ------------------------------------------------------- a backbone that raises when told to

RAISE_ENV = "CLUE_TEST_BACKBONE_RAISES"
"""``1``: :class:`FlakyEncoder` raises in every forward; a rank number (``rank1``): only
in that process of a data-parallel run (its ``RANK``)."""


class FlakyEncoder(SequenceEncoder):
    """Mean of the item embeddings; raises RuntimeError in ``forward`` when
    ``$CLUE_TEST_BACKBONE_RAISES`` says so (a plugin bug that shows only at some point)."""

    def __init__(self, num_items: int, max_len: int, dim: int) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        told = os.environ.get(RAISE_ENV, "")
        if told == "1" or (told.startswith("rank") and told[4:] == os.environ.get("RANK")):
            raise RuntimeError("the flaky encoder lost its weights")
        states = self.item_embedding(items)
        return EncoderOutput(states, states.mean(dim=1))


class FlakySpec(BackboneSpec):
    """A backbone that raises in forward when ``$CLUE_TEST_BACKBONE_RAISES`` is set."""

    kind: Literal["flaky"] = "flaky"
    dim: int = 16

    def build(self, context: BuildContext) -> FlakyEncoder:
        return FlakyEncoder(context.num_items, context.max_len, self.dim)


class FlakyComponents:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        return [FlakySpec]


FLAKY = (entry_point("flaky", FlakyComponents(), "clue-flaky"),)
FLAKY_PROVIDER = "clue-flaky 0.1"


class ExitingPlugin:
    """A plugin whose hook calls ``sys.exit(3)`` instead of raising."""

    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        import sys

        sys.exit(3)
