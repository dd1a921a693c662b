"""clue_fw: contrastive pre-training of transferable user representations (CLUE)."""

from __future__ import annotations

__version__ = "0.1.0"
