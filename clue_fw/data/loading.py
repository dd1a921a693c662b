"""Load the data a recipe names (file or synthetic) into :class:`SequenceData`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clue_fw.data.dataset import SequenceData, build_sequence_data
from clue_fw.data.readers import RawSequences, read_interaction_table, read_sequence_file
from clue_fw.data.root import resolve_data_path
from clue_fw.data.synthetic import generate_sequences
from clue_fw.errors import DataError
from clue_fw.memory import check_synthetic_memory


def read_raw(spec: Any, root: Path | None = None) -> tuple[RawSequences, str]:
    """Raw sequences and a human-readable source name for a recipe's ``data`` section."""
    if spec.format == "synthetic":
        if spec.min_length > spec.max_length:
            raise DataError(
                f"data.min_length ({spec.min_length}) must not exceed data.max_length "
                f"({spec.max_length})."
            )
        check_synthetic_memory(spec)  # before anything is generated
        raw = generate_sequences(
            num_users=spec.num_users,
            num_items=spec.num_items,
            min_length=spec.min_length,
            max_length=spec.max_length,
            num_clusters=min(spec.num_clusters, spec.num_items),
            stickiness=spec.stickiness,
            seed=spec.seed,
        )
        return raw, "synthetic data"
    path = resolve_data_path(spec.path, root, "data.path")
    if spec.format == "sequences":
        return read_sequence_file(path), str(path)
    return (
        read_interaction_table(
            path, columns=spec.columns, separator=spec.separator, skip_header=spec.skip_header
        ),
        str(path),
    )


def load_data(spec: Any, root: Path | None = None) -> SequenceData:
    raw, source = read_raw(spec, root)
    return build_sequence_data(
        raw,
        min_user_interactions=spec.min_user_interactions,
        min_item_interactions=spec.min_item_interactions,
        source=source,
    )
