"""Tests for clue_fw.provenance: the registry records each spec's provider, and the layers
below it name a plugin from that record without importing the registry."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

import torch

from clue_fw import provenance
from clue_fw.components import BackboneSpec, BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.hookspecs import hookimpl
from clue_fw.registry import build_registry, get_registry, reset_registry


class TinyEncoder(SequenceEncoder):
    def __init__(self, context: BuildContext) -> None:
        super().__init__()
        self.init_vocabulary(context.num_items, context.max_len, 4)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        states = self.item_embedding(items)
        return EncoderOutput(states, states[:, -1])


class TinySpec(BackboneSpec):
    """A tiny test backbone."""

    kind: Literal["tiny_provenance"] = "tiny_provenance"

    def build(self, context: BuildContext) -> TinyEncoder:
        return TinyEncoder(context)


class TinyPlugin:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        return [TinySpec]


def test_the_process_registry_hands_its_records_down() -> None:
    encoder = TinySpec().build(BuildContext(num_items=5, max_len=4))
    reset_registry(build_registry(extra_plugins=[(TinyPlugin(), "tiny 0.1")]))
    assert provenance.provider_of("backbone", "tiny_provenance") == "tiny 0.1"
    assert provenance.describe_component(encoder) == (
        f"TinyEncoder (module {__name__}, plugin tiny 0.1)"
    )
    reset_registry(None)  # dropped: nothing is named until the next registry is built
    assert provenance.provider_of("backbone", "tiny_provenance") is None
    assert provenance.describe_component(encoder) == f"TinyEncoder (module {__name__})"
    get_registry()  # built lazily: the built-ins are named again
    assert provenance.provider_of("backbone", "transformer").endswith("(built-in)")


def test_a_registry_that_is_not_the_process_one_changes_no_record() -> None:
    reset_registry(None)
    build_registry(extra_plugins=[(TinyPlugin(), "tiny 0.1")])
    assert provenance.provider_of("backbone", "tiny_provenance") is None


def test_the_layers_below_load_without_the_registry() -> None:
    """The components, the view pipeline, the loop, the auxiliary terms and data loading
    import no registry, memory guard or runner (the 19-module import cycle at run time is
    gone)."""
    code = (
        "import sys\n"
        "import clue_fw.components, clue_fw.augmentations.compose, clue_fw.training.loop\n"
        "import clue_fw.training.auxiliary, clue_fw.data.loading\n"
        "print(sorted(m for m in ('clue_fw.registry', 'clue_fw.resources', 'clue_fw.runner')"
        " if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
