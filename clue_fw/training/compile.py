"""``train.compile``: a stage's training step through ``torch.compile``, else eagerly.

:class:`StepCompiler` wraps each epoch's step function (the objective's or the head's
loss, with the encoder's forward pass in it) in ``torch.compile`` with inductor and fixed
shapes (``dynamic=False``: the full batch and the last, smaller batch get a graph each;
later epochs reuse them). Backward runs through the compiled graph's own backward; the
optimiser step, clipping and the numerical guard stay eager
(:func:`~clue_fw.training.loop.train_epoch`).

Where compiling is impossible (torch.compile unsupported on this Python or platform) or
fails (no working C++ compiler for inductor on the CPU, an op inductor cannot lower), the
stage logs one line saying why and runs every step eagerly from then on: the batch whose
compilation failed is computed eagerly, so no step is lost. An error of the step itself
(a bad batch, a plugin's bug) is not a compilation failure: it is raised as without
``train.compile``.

Random numbers: inductor draws dropout masks with its own generator (seeded from torch's,
which each epoch re-seeds), so a compiled run repeats itself run after run but does not
draw the eager run's masks; with ``torch._inductor.config.fallback_random = True`` it
draws the eager ones (slower; the tests use it to compare losses). Views drawn from the
epoch's view generator are the eager ones either way.

>>> compiler = StepCompiler("pretrain", log=print)
>>> step = compiler.wrap(lambda batch: batch["x"].sum())  # compiled on its first call
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

Step = Callable[[dict[str, torch.Tensor]], Any]
Backend = str | Callable[..., Any]


def unsupported_reason() -> str | None:
    """Why ``torch.compile`` cannot run here at all, or None when it can be tried."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python version or platform"
    return None


def compile_failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "compiling failed", as opposed to an error of the step."""
    import torch._dynamo.exc

    return (torch._dynamo.exc.TorchDynamoException,)


def describe_failure(error: BaseException) -> str:
    """The error's type and its first line, for the one log line; for a backend's failure
    (torch wraps it), the backend's own error (``InvalidCxxCompiler: No working C++
    compiler found ...``)."""
    inner = getattr(error, "inner_exception", None)
    if isinstance(inner, BaseException) and inner is not error:
        return describe_failure(inner)
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


class StepCompiler:
    """Compiles the training steps of one stage (``where``: its name, for the log).

    ``log`` takes the stage's lines about compiling: once, the first compiled call's
    time; once, why the steps run eagerly (a failure may come after a success: the
    last, smaller batch compiles a graph of its own). ``backend`` is torch.compile's
    (inductor by default; tests pass others). After a failure every step of the stage
    runs eagerly.
    """

    def __init__(
        self, where: str, log: Callable[[str], None], backend: Backend = "inductor"
    ) -> None:
        self.where = where
        self.log = log
        self.backend = backend
        self.failure: str | None = unsupported_reason()
        self._said: set[str] = set()

    @property
    def eager(self) -> bool:
        """True once compiling has failed or was found impossible."""
        return self.failure is not None

    def wrap(self, step: Step) -> Step:
        """``step``, compiled on its first call; eager when compiling cannot work."""
        if self.failure is not None:
            self._say(
                "eager", f"{self.where}: train.compile: {self.failure}; the steps run eagerly"
            )
            return step
        compiled = torch.compile(step, backend=self.backend, dynamic=False)

        def call(batch: dict[str, torch.Tensor]) -> Any:
            if self.failure is not None:
                return step(batch)
            started = time.perf_counter()
            try:
                output = compiled(batch)
            except compile_failures() as error:
                output = step(batch)  # the step's own error, if it has one, is raised here
                self.failure = describe_failure(error)
                self._say(
                    "eager",
                    f"{self.where}: train.compile: compiling the training step failed "
                    f"({self.failure}); the steps run eagerly",
                )
                return output
            self._say(
                "compiled",
                f"{self.where}: train.compile: compiled the training step (its first call "
                f"took {time.perf_counter() - started:.1f} s)",
            )
            return output

        return call

    def _say(self, event: str, line: str) -> None:
        """Log ``line`` the first time ``event`` (``compiled``, ``eager``) happens."""
        if event not in self._said:
            self._said.add(event)
            self.log(line)
