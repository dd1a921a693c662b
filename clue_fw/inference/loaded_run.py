"""A finished run, loaded for use: user vectors and top-k recommendations from raw ids.

>>> run = load_run("runs/quickstart/20261130-120000-ab12")          # doctest: +SKIP
>>> run.embed_users({"ann": [12, 7, 40]}).vectors.shape            # doctest: +SKIP
torch.Size([1, 32])
>>> run.recommend({"ann": [12, 7, 40]}, k=5).items                 # doctest: +SKIP

:func:`load_run` rebuilds the recipe, the encoder with the chosen stage's weights and
the item catalogue from a run directory, with the checks ``--resume`` makes (run
identity, checkpoint role, data fingerprint). The encoder reads each user's most recent
``max_len`` known items, exactly as evaluation does; ``recommend`` scores items with
the run's head, when the head says it ranks items (:attr:`HeadSpec.ranking`: the
built-in ``next_item``, a plugin's ranking head), and excludes seen items as its
protocol does (``finetune.head.exclude_seen``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    SequenceEncoder,
    TaskData,
    user_vectors,
)
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.readers import RawSequences
from clue_fw.devices import resolve_device
from clue_fw.errors import CheckpointError, ClueError, EvaluationError, quote
from clue_fw.inference.catalogue import (
    EncodedSequences,
    InputReport,
    ItemCatalogue,
    Sequences,
    UnknownItemsWarning,
)
from clue_fw.inference.results import (
    Candidates,
    ItemVectors,
    Recommendations,
    UserVectors,
    UserVectorStream,
    candidate_items,
    whole_number,
)
from clue_fw.inference.run_files import (
    HEAD_PREFIX,
    RunFiles,
    Stage,
    check_stage,
    load_task_data,
    read_run,
    stored_item_ids,
)
from clue_fw.inference.top_k import item_block_of, top_k_at_once, top_k_in_blocks
from clue_fw.running.assembly import catalogue_context, run_context
from clue_fw.running.identity import RunIdentity
from clue_fw.training.checkpoint import load_module_tensors

Progress = Callable[[int], None]
"""Called with the number of users just done, after every batch."""
EXCLUDE_CHOICES = ("history", "none")


class LoadedRun:
    """A finished run's recipe, encoder (eval mode, on ``device``) and item catalogue.

    Made by :func:`load_run`. ``head`` is the run's ranking head (``next_item``, or a
    plugin's head whose spec has a :attr:`~clue_fw.components.HeadSpec.ranking`; from the
    fine-tuned checkpoint, or with tied weights the encoder's) that :meth:`recommend` scores
    with, or None when the head ranks no items.
    """

    def __init__(
        self,
        files: RunFiles,
        encoder: SequenceEncoder,
        head: DownstreamHead | None,
        no_head: str,
        catalogue: ItemCatalogue,
        device: torch.device,
        data_root: Path | None,
        task_data: TaskData | None,
        context: BuildContext | None = None,
    ) -> None:
        self.files = files
        #: What the run's components were built with (:mod:`clue_fw.running.assembly`).
        self.context = context or catalogue_context(files.recipe, catalogue.raw_ids, data_root)
        self.encoder = encoder
        self.head = head
        self._no_head = no_head
        self.catalogue = catalogue
        self.device = device
        self.data_root = data_root
        self._task_data = task_data

    # ------------------------------------------------------------------ what it is

    @property
    def run_dir(self) -> Path:
        return self.files.run_dir

    @property
    def stage(self) -> Stage:
        return self.files.stage

    @property
    def recipe(self) -> Any:
        """The run's validated recipe."""
        return self.files.recipe

    @property
    def identity(self) -> RunIdentity:
        return self.files.identity

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The run's ``metrics.json`` (None for a run loaded at stage ``pretrain`` that has
        not finished fine-tuning)."""
        return self.files.metrics

    @property
    def max_len(self) -> int:
        return int(self.recipe.data.max_len)

    @property
    def user_vector(self) -> str:
        """Which user vector the run's head reads: ``ur`` ([UR] output) or ``mean``."""
        return str(self.recipe.finetune.head.reads_user_vector)

    @property
    def exclude_seen(self) -> str | None:
        """The run's own ``exclude_seen`` (None when its head ranks no items)."""
        ranking = self.recipe.finetune.head.ranking
        return ranking.exclude_seen if ranking is not None else None

    def __repr__(self) -> str:
        return (
            f"LoadedRun({str(self.run_dir)!r}, stage={self.stage!r}, "
            f"items={len(self.catalogue)}, dim={self.encoder.dim}, device={self.device})"
        )

    # ------------------------------------------------------------------ user vectors

    def embed_users(
        self,
        sequences: Sequences | RawSequences,
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> UserVectors:
        """User vectors of raw item sequences (oldest first): a list of sequences, a
        mapping user -> items, or a sequence file read by
        :func:`~clue_fw.data.readers.read_sequence_file`. Unknown item ids are skipped and
        reported (in the result's ``report`` and as an :class:`UnknownItemsWarning`); a
        user with no known item is left out of the result."""
        encoded = self._encode(sequences)
        vectors = self._user_vectors(encoded.csr, batch_size, progress)
        return UserVectors(encoded.users, vectors, encoded.report)

    def run_user_histories(self) -> tuple[list[int], Csr]:
        """The run's own users (raw ids) and the history its test split feeds the encoder:
        every interaction but the held-out test item (leave-one-out: train + valid); for
        user-level heads (``profile``, ``cold_start``), which hold out no item, the whole
        (source) sequence. Reads the run's data (checked against its fingerprint)."""
        task_data = self.task_data()
        histories = self.recipe.finetune.head.test_histories(task_data)
        return [int(u) for u in task_data.sequences.user_ids], histories

    def embed_run_users(
        self, *, batch_size: int | None = None, progress: Progress | None = None
    ) -> UserVectors:
        """Vectors of the run's own users from :meth:`run_user_histories`."""
        return self.stream_users(batch_size=batch_size, progress=progress).collect()

    def stream_users(
        self,
        sequences: Sequences | RawSequences | None = None,
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> UserVectorStream:
        """:meth:`embed_users` (or, without ``sequences``, :meth:`embed_run_users`) one
        batch at a time: the users and the report at once, the vectors as the stream's
        ``chunks`` are consumed, so a caller that writes each chunk away (``clue embed``)
        never holds all of them."""
        if sequences is None:
            users, histories = self.run_user_histories()
            report = InputReport(sequences=len(users), catalogue_size=len(self.catalogue))
            listed: list[Hashable] = list(users)
        else:
            encoded = self._encode(sequences)
            listed, histories, report = encoded.users, encoded.csr, encoded.report
        chunks = self._vector_batches(histories, batch_size, progress)
        return UserVectorStream(listed, report, chunks, self.encoder.dim)

    def embed_histories(
        self,
        histories: Csr,
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """``[R, d]`` float32 (CPU) user vectors of ``histories``, rows of internal item ids
        (``1..items``, oldest first, as :meth:`run_user_histories` returns), each read from
        its most recent ``max_len`` items, as evaluation reads them."""
        return self._user_vectors(histories, batch_size, progress)

    def untrained(self, seed: int = 0) -> LoadedRun:
        """The same run with a freshly built, untrained encoder of its recipe's backbone,
        initialised under ``seed`` (the caller's random state is left as it was): the
        random-features baseline of a probe. It has no head (it scores no items)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = self.recipe.backbone.build(self.context)
        encoder.to(self.device).eval()
        return LoadedRun(
            self.files,
            encoder,
            None,
            "it is an untrained encoder, with no head",
            self.catalogue,
            self.device,
            self.data_root,
            self._task_data,
            self.context,
        )

    def item_vectors(self) -> ItemVectors:
        """The vectors that score items against user vectors: the fine-tuned output layer
        of a ``next_item`` head with ``tie_weights: false``, else the encoder's item
        embeddings (padding and [MASK] rows left out)."""
        count = len(self.catalogue)
        output = getattr(self.head, "output", None)  # next_item, tie_weights: false
        if output is not None:
            weight = output.weight
        else:
            weight = self.encoder.item_embedding.weight
        vectors = weight.detach()[1 : count + 1].float().cpu().clone()
        return ItemVectors(torch.from_numpy(self.catalogue.raw_ids.copy()), vectors)

    # ------------------------------------------------------------------ recommendations

    def recommend(
        self,
        sequences: Sequences | RawSequences,
        k: int = 10,
        *,
        exclude_seen: str | None = None,
        candidates: Iterable[int] | None = None,
        batch_size: int | None = None,
        item_block: int | None = None,
        progress: Progress | None = None,
    ) -> Recommendations:
        """Top-``k`` raw item ids and scores for each user's raw sequence, scored by the
        run's head (one that ranks items: :attr:`HeadSpec.ranking`). ``exclude_seen``
        (default: the run's own) ``history`` scores every known item of the user's
        sequence ``-inf`` (all of it, not only the ``max_len`` the encoder reads), as
        evaluation does; ``none`` ranks every item. ``candidates`` (raw item ids)
        restricts the ranking to those items: ids the run does not know are skipped and
        counted in the result's ``candidates_unknown``; none known is an error. ``k``
        larger than the items left leaves ``-1`` slots.

        ``item_block`` (default: the head's own, ``finetune.head.item_block``) scores that
        many items at a time and keeps a running top-k, for a head that scores in blocks
        (``next_item``'s ``item_scorer``): no ``[batch_size, items]`` matrix is made. The
        items and scores are those of scoring every item at once; equal scores come
        lowest item id first (at once, their order is ``torch.topk``'s)."""
        checked = self._recommend_settings(k, exclude_seen, candidates, item_block)
        return self._rank(self._encode(sequences), *checked, batch_size, progress)

    def recommend_run_users(
        self,
        k: int = 10,
        *,
        exclude_seen: str | None = None,
        candidates: Iterable[int] | None = None,
        batch_size: int | None = None,
        item_block: int | None = None,
        progress: Progress | None = None,
    ) -> Recommendations:
        """:meth:`recommend` for the run's own users, each from its whole sequence in the
        run's data (every interaction, the held-out ones included: what comes next after
        all that is known). Reads the run's data (checked against its fingerprint)."""
        checked = self._recommend_settings(k, exclude_seen, candidates, item_block)
        data = self.task_data().sequences
        users: list[Hashable] = [int(u) for u in data.user_ids]
        report = InputReport(sequences=len(users), catalogue_size=len(self.catalogue))
        encoded = EncodedSequences(users, data.sequences, report)
        return self._rank(encoded, *checked, batch_size, progress)

    def _recommend_settings(
        self,
        k: int,
        exclude_seen: str | None,
        candidates: Iterable[int] | None,
        item_block: int | None,
    ) -> tuple[DownstreamHead, int, str, Candidates | None, int | None]:
        """The head that scores, ``k`` (at most the catalogue), the exclusion, the
        candidate items and the item block, checked before any sequence is read."""
        head = self._require_head()
        exclude = self._exclusion(exclude_seen)
        k = min(whole_number(k, "k", 1), len(self.catalogue))
        allowed = None if candidates is None else candidate_items(candidates, self.catalogue)
        block = item_block_of(head, item_block, f"the head of {self.run_dir}")
        return head, k, exclude, None if allowed is None else allowed.to(self.device), block

    def _rank(
        self,
        encoded: EncodedSequences,
        head: DownstreamHead,
        k: int,
        exclude: str,
        candidates: Candidates | None,
        item_block: int | None,
        batch_size: int | None,
        progress: Progress | None,
    ) -> Recommendations:
        """Top-``k`` items of each of ``encoded``'s users (see :meth:`recommend`)."""
        items, scores = [], []
        with torch.no_grad():
            for rows, batch in self._batches(encoded.csr, batch_size):
                seen = encoded.csr.batch_pairs(rows) if exclude == "history" else None
                if item_block is None:
                    top, index, nan_rows = top_k_at_once(
                        head, self.encoder, batch, k, seen, candidates
                    )
                else:
                    top, index, nan_rows = top_k_in_blocks(
                        head, self.encoder, batch, k, item_block, seen, candidates
                    )
                if bool(nan_rows.any()):
                    raise EvaluationError(
                        f"The model of {self.run_dir} ({self.stage}) scored items NaN for "
                        f"{int(nan_rows.sum())} of a batch of "
                        f"{rows.numel()} users; its weights are broken. Use another run."
                    )
                top, index = top.cpu(), index.cpu()
                raw = torch.from_numpy(self.catalogue.to_raw(index.clamp(min=1)))
                items.append(torch.where(torch.isinf(top), torch.full_like(raw, -1), raw))
                scores.append(top)
                if progress is not None:
                    progress(rows.numel())
        return Recommendations(
            encoded.users,
            torch.cat(items) if items else torch.empty(0, k, dtype=torch.int64),
            torch.cat(scores) if scores else torch.empty(0, k),
            encoded.report,
            exclude,
            None if candidates is None else candidates.count,
            [] if candidates is None else candidates.unknown,
        )

    # ------------------------------------------------------------------ internals

    def task_data(self) -> TaskData:
        """The run's data, read once (lazily) and checked against its fingerprint."""
        if self._task_data is None:
            task_data = load_task_data(self.files, self.data_root)
            if not np.array_equal(task_data.sequences.item_ids, self.catalogue.raw_ids):
                raise CheckpointError(
                    f"The item catalogue in the checkpoints of {self.run_dir} is not its data's; "
                    "a checkpoint was replaced. Run the recipe again."
                )
            self._task_data = task_data
        return self._task_data

    def _encode(self, sequences: Sequences | RawSequences) -> EncodedSequences:
        if isinstance(sequences, RawSequences):  # a sequence file: packed, no lists
            users: list[Hashable] = list(sequences.users)
            encoded = self.catalogue.encode_packed(users, sequences.offsets, sequences.items)
        else:
            encoded = self.catalogue.encode(sequences)
        if not encoded.report.clean:
            warnings.warn(encoded.report.summary(), UnknownItemsWarning, stacklevel=3)
        return encoded

    def _batches(
        self, histories: Csr, batch_size: int | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(user rows, ``[B, max_len]`` windows on the device) of every batch; each window
        holds the user's most recent ``max_len`` items, left-padded, as evaluation has."""
        size = batch_size if batch_size is not None else self.recipe.finetune.eval.batch_size
        size = whole_number(size, "batch_size", 1)
        self.encoder.eval()
        if self.head is not None:
            self.head.eval()
        lengths = histories.lengths
        for start in range(0, histories.num_rows, size):
            rows = torch.arange(start, min(start + size, histories.num_rows))
            windows = histories.gather_windows(rows, lengths[rows], self.max_len)
            yield rows, windows.to(self.device)

    def _user_vectors(
        self, histories: Csr, batch_size: int | None, progress: Progress | None
    ) -> torch.Tensor:
        parts = list(self._vector_batches(histories, batch_size, progress))
        return torch.cat(parts) if parts else torch.empty(0, self.encoder.dim)

    def _vector_batches(
        self, histories: Csr, batch_size: int | None, progress: Progress | None
    ) -> Iterator[torch.Tensor]:
        """``[B, d]`` float32 CPU user vectors of ``histories``, one batch at a time."""
        for rows, batch in self._batches(histories, batch_size):
            with torch.no_grad():
                output = self.encoder(batch)
                vectors = user_vectors(output, batch, self.user_vector).float().cpu()
            if progress is not None:
                progress(rows.numel())
            yield vectors

    def _require_head(self) -> DownstreamHead:
        if self.head is None:
            raise ClueError(f"Cannot recommend with the run in {self.run_dir}: {self._no_head}.")
        return self.head

    def _exclusion(self, exclude_seen: str | None) -> str:
        choice = exclude_seen if exclude_seen is not None else self.exclude_seen
        if choice not in EXCLUDE_CHOICES:
            raise ClueError(
                f"exclude_seen must be 'history' (seen items are not recommended) or 'none' "
                f"(every item is ranked), not {quote(choice)}."
            )
        return str(choice)


def load_run(
    run_dir: str | os.PathLike[str],
    stage: Stage = "finetune",
    *,
    device: str | torch.device | None = None,
    data_root: str | os.PathLike[str] | None = None,
) -> LoadedRun:
    """Load a finished run for inference.

    ``stage="finetune"``: the fine-tuned encoder (and head) of ``finetune/best.safetensors``
    (the run must have finished: ``metrics.json``); ``"pretrain"``: the pre-trained encoder
    of ``pretrain/encoder.safetensors``. ``device``: ``auto`` (default: CUDA when available),
    ``cpu``, ``cuda:N``... ``data_root``: where the run's data lives (default
    ``$CLUE_DATA_DIR``), read only when the checkpoints hold no item catalogue (a run that
    did not pre-train) or for :meth:`LoadedRun.embed_run_users`.

    Refused with a :class:`~clue_fw.errors.ClueError` that says what is missing: a
    directory that is not a run, a run that has not finished the stage, a checkpoint that
    another run wrote or whose role is wrong, data that changed since the run.
    """
    chosen = check_stage(stage)
    if not str(run_dir).strip():  # Path("") would be the current directory, shown as "."
        raise ClueError("The run directory is empty; give the directory that `clue run` printed.")
    files = read_run(Path(run_dir), chosen)
    root = Path(data_root) if data_root is not None else None
    task_data = None
    item_ids = stored_item_ids(files)
    if item_ids is None:  # a run that did not pre-train: its data holds the catalogue
        task_data = load_task_data(files, root)
        item_ids = task_data.sequences.item_ids
    catalogue = ItemCatalogue(item_ids)
    recipe = files.recipe
    if task_data is not None:
        context = run_context(recipe, task_data, root)
    else:
        context = catalogue_context(recipe, catalogue.raw_ids, root)
    head_spec = recipe.finetune.head
    head: DownstreamHead | None = None
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        encoder = recipe.backbone.build(context)
        no_head = head_spec.ranking_problem(chosen) or ""  # the head says whether it ranks
        if not no_head:
            stub = task_data or TaskData(_empty_sequences(catalogue))
            head = head_spec.build(context, encoder, stub)
    load_module_tensors(encoder, files.tensors, files.encoder_prefix, files.checkpoint)
    if head is not None and chosen == "finetune":
        load_module_tensors(head, files.tensors, HEAD_PREFIX, files.checkpoint)
    torch_device = resolve_device(str(device) if device is not None else "auto")
    encoder.to(torch_device).eval()
    if head is not None:
        head.to(torch_device).eval()
    return LoadedRun(
        files, encoder, head, no_head, catalogue, torch_device, root, task_data, context
    )


def _empty_sequences(catalogue: ItemCatalogue) -> SequenceData:
    """Data without users, for building a ranking head (which reads none)."""
    return SequenceData(
        Csr.from_lists([]), len(catalogue), np.empty(0, np.int64), catalogue.raw_ids
    )
