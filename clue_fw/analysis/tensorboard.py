"""A run's training curves as TensorBoard scalars, written under ``<run>/tensorboard/``.

The source is what the run already writes: each stage's ``history.csv`` (every column: the
loss and its terms, ``z_std``, the representation monitors ``rep_*``, the learning rate
``lr``, the validation metrics, ``seq/s`` and timings) and, once the run has finished,
``metrics.json``. So the event files hold exactly the numbers of the run's own files, a run
started without TensorBoard can be exported later, and nothing in training depends on it:

- ``clue run RECIPE --tensorboard`` follows the run while it trains (:class:`Follower`, a
  background thread of the process that writes the run, so rank 0 only under torchrun)
  and writes each new epoch as it appears;
- ``clue tensorboard RUN`` exports a finished (or running) run once.

Tags are ``<stage>/<column>`` (``pretrain/loss``, ``finetune/valid ndcg@10``) with the
epoch as the step, and ``final/<split>/<metric>`` for ``metrics.json``. Then
``tensorboard --logdir RUN/tensorboard`` (or a folder of many runs) shows them. Needs the
``tensorboard`` package: ``pip install 'clue_fw[tensorboard]'``.
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from clue_fw.analysis.history_csv import read_history
from clue_fw.errors import ClueError
from clue_fw.running.layout import HISTORY_FILE, STAGES, metrics_path, stage_file

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_EXTRA = "pip install 'clue_fw[tensorboard]'"


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a ClueError naming the extra when the
    ``tensorboard`` package is missing."""
    try:
        importlib.import_module("tensorboard")
        module: ModuleType = importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        raise ClueError(
            f"TensorBoard output needs the tensorboard package, which is not installed: "
            f"{TENSORBOARD_EXTRA} (or pip install tensorboard)."
        ) from None
    return module.SummaryWriter


class TensorBoardExport:
    """Writes the epochs of a run's ``history.csv`` files not written yet (see the module
    docstring); :meth:`sync` may be called any number of times while the run goes on."""

    def __init__(self, run_dir: Path, log_dir: Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.run_dir / TENSORBOARD_DIR
        self.writer = summary_writer_class()(log_dir=str(self.log_dir))
        self.written: dict[str, float] = {}  # stage -> last epoch written (fine-tuning has 0)
        self.final_written = False

    def sync(self) -> int:
        """Write the epochs that appeared since the last call (and ``metrics.json`` once
        it exists); return how many scalars were written."""
        count = 0
        for stage in STAGES:
            path = stage_file(self.run_dir, stage, HISTORY_FILE)
            if not path.is_file():
                continue
            for row in read_history(path):
                epoch = row.get("epoch")
                if not isinstance(epoch, float) or epoch <= self.written.get(stage, -1.0):
                    continue  # a resumed run rewrites earlier rows: each epoch goes once
                for column, value in row.items():
                    if column != "epoch" and isinstance(value, float):
                        self.writer.add_scalar(f"{stage}/{column}", value, int(epoch))
                        count += 1
                self.written[stage] = epoch
        count += self._final_metrics()
        self.writer.flush()
        return count

    def _final_metrics(self) -> int:
        path = metrics_path(self.run_dir)
        if self.final_written or not path.is_file():
            return 0
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0  # being written: the next sync reads it
        count = 0
        for split in ("valid", "test"):
            for name, value in (metrics.get(split) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"final/{split}/{name}", float(value), 0)
                    count += 1
        self.final_written = True
        return count

    def close(self) -> None:
        self.writer.close()


class Follower:
    """:class:`TensorBoardExport` of a run that is training, every ``interval`` seconds in
    a daemon thread, and once more when stopped (so the last epoch and the final metrics
    are in)."""

    def __init__(self, run_dir: Path, interval: float = 2.0) -> None:
        self.export = TensorBoardExport(run_dir)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clue-tensorboard", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.export.sync()
            except ClueError:
                pass  # a history.csv being replaced: the next round reads the new one

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.export.sync()
        finally:
            self.export.close()
