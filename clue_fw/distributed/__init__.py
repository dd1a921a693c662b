"""Data-parallel training under ``torchrun``: one process per device, the recipe's batches.

``torchrun --nproc_per_node N -m clue_fw run RECIPE`` (or ``clue run`` started by
torchrun) runs N processes that train one model together (``docs/distributed.md``):

* **Batches.** Every process holds the examples and draws the same order from the
  per-epoch generators (seeded from (seed, stage, epoch)), cuts the same *global*
  batches of the recipe's ``batch_size`` and trains on its part of each
  (:class:`~clue_fw.data.examples.Shard`). A ``batch_size`` that the number of processes
  does not divide is refused (:func:`check_batch_sizes`).
* **Loss and gradients.** Each process scales its loss by its share of the global batch
  (:class:`ShardedStep`; exactly 1 when the batch splits evenly), and
  :class:`GradientSync` averages the gradients in buckets, each all-reduced while the
  backward pass goes on. No step waits for the device on the host.
  Explicit views (mask, crop, permute) are drawn for the whole global batch
  (:class:`GlobalView`), so every row gets the randomness it gets in one process.
* **BatchNorm** layers use the statistics of the global batch
  (:class:`GlobalBatchNorm1d`, :func:`convert_batchnorm`), on CPU (gloo) and CUDA
  (NCCL) alike; their state dict is BatchNorm1d's, so checkpoints are interchangeable.
* **Evaluation.** Each process scores its whole batches of the users, and the per-batch
  metric sums are added in one process's order (:meth:`Distributed.evaluate`): the
  metrics equal one process's to the bit.
* **Files.** Only rank 0 locks, reads and writes the run directory. What it decides
  (the run directory, a resumed stage, a checkpoint) reaches the others by broadcast
  (:meth:`Distributed.on_main`), and so does a refusal: every process raises the same
  error and exits with code 2, none is left waiting in a collective.

With one process every method here is the identity, and nothing changes.

The package, one job a module: :mod:`~clue_fw.distributed.launch` (torchrun's
environment, the batch-size check, the session that joins and leaves the group),
:mod:`~clue_fw.distributed.failure` (a failing process tells the others through the
group's store), :mod:`~clue_fw.distributed.processes` (the rank-0 protocol:
:class:`Distributed`), :mod:`~clue_fw.distributed.steps` (sharded step, global view),
:mod:`~clue_fw.distributed.gradients` (the gradient all-reduce, overlapped with the
backward pass) and :mod:`~clue_fw.distributed.batchnorm` (the global BatchNorm layer).
Every name is importable from ``clue_fw.distributed``, as before the split.
"""

from clue_fw.distributed.batchnorm import GlobalBatchNorm1d, convert_batchnorm
from clue_fw.distributed.failure import (
    FAILURE_KEY,
    LEAVE_GRACE_S,
    STORE_TIMEOUT_S,
    announce_failure,
    failure_elsewhere,
    leave_after_failure,
    lost_a_process,
    store_reachable,
)
from clue_fw.distributed.gradients import BUCKET_BYTES, GradientSync
from clue_fw.distributed.launch import (
    FORCE_ENV,
    TIMEOUT_ENV,
    Launch,
    check_batch_sizes,
    launch_from_environment,
    rank_device,
    session,
)
from clue_fw.distributed.processes import SINGLE, Distributed
from clue_fw.distributed.steps import GlobalView, ShardedStep

__all__ = [
    "BUCKET_BYTES",
    "FAILURE_KEY",
    "FORCE_ENV",
    "LEAVE_GRACE_S",
    "SINGLE",
    "STORE_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Distributed",
    "GlobalBatchNorm1d",
    "GlobalView",
    "GradientSync",
    "Launch",
    "ShardedStep",
    "announce_failure",
    "check_batch_sizes",
    "convert_batchnorm",
    "failure_elsewhere",
    "launch_from_environment",
    "leave_after_failure",
    "lost_a_process",
    "rank_device",
    "session",
    "store_reachable",
]
