"""Figures of runs: training curves, a 2-D PCA scatter and a singular-value spectrum.

matplotlib is the optional extra ``plot`` (``pip install 'clue_fw[plot]'``); it is
imported only when a figure is drawn, with the Agg backend (no display needed). Every
figure uses constrained layout and puts the legend outside the panels, so no text
overlaps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clue_fw.analysis.history_csv import Row
from clue_fw.errors import ClueError

INSTALL_HINT = "pip install 'clue_fw[plot]'"
DPI = 100
MAX_LEGEND_CLASSES = 20
NO_LABEL = "(no label)"


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend; a ClueError naming the extra if missing."""
    try:
        import matplotlib
    except ImportError:
        raise ClueError(
            f"Drawing figures needs matplotlib, which is not installed. Install the optional "
            f"extra: {INSTALL_HINT} (or pip install matplotlib)."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Panel:
    """One panel of the curves figure: ``column`` of ``stage``'s history against epoch."""

    stage: str
    column: str
    title: str
    ylabel: str
    #: Fixed y-axis limits of a bounded measure (None: that end follows the data), so
    #: that a flat curve near a bound is not blown up into noise by autoscaling.
    bounds: tuple[float | None, float | None] = (None, None)


def curve_panels(histories: Sequence[Mapping[str, list[Row]]]) -> list[Panel]:
    """The panels the runs have data for: pre-training loss and collapse monitor,
    fine-tuning loss and every validation metric, in that order."""
    found: dict[str, dict[str, None]] = {"pretrain": {}, "finetune": {}}
    for run in histories:
        for stage, rows in run.items():
            for row in rows:
                found.setdefault(stage, {}).update(
                    dict.fromkeys(k for k, v in row.items() if isinstance(v, float))
                )
    panels = []
    pre, fine = found.get("pretrain", {}), found.get("finetune", {})
    if "loss" in pre:
        panels.append(Panel("pretrain", "loss", "pre-training loss", "loss"))
    if "z_std" in pre:
        panels.append(
            Panel(
                "pretrain", "z_std", "projector spread (z_std; 0 = collapsed)", "z_std", (0, 1.05)
            )
        )
    if "rep_erank" in pre:  # the encoder's own vectors: what z_std cannot see
        panels.append(
            Panel(
                "pretrain", "rep_erank", "encoder's effective rank (rep_erank)", "rank", (0, None)
            )
        )
    if "rep_std" in pre:
        panels.append(
            Panel("pretrain", "rep_std", "encoder's spread (rep_std; 0 = one point)", "rep_std",
                  (0, 1.05))
        )  # fmt: skip
    if "loss" in fine:
        panels.append(Panel("finetune", "loss", "fine-tuning loss", "loss"))
    for column in fine:
        if column.startswith("valid "):
            metric = column.removeprefix("valid ")
            panels.append(Panel("finetune", column, f"validation {metric}", metric))
    return panels


def best_epoch(rows: Sequence[Row]) -> float | None:
    """The epoch that early stopping kept: the last row marked ``*`` in ``best``."""
    marked = [row["epoch"] for row in rows if row.get("best") == "*"]
    return marked[-1] if marked and isinstance(marked[-1], float) else None


def plot_curves(
    labels: Sequence[str], histories: Sequence[Mapping[str, list[Row]]], out: Path
) -> list[Panel]:
    """Draw the curves of runs (``labels[i]`` names run ``i``, ``histories[i]`` maps a
    stage to its rows) to ``out`` (PNG, SVG or PDF); return the panels drawn."""
    with matplotlib_failures(out):
        figure, panels = draw_curves(labels, histories)
    _save(figure, out)
    return panels


def draw_curves(
    labels: Sequence[str], histories: Sequence[Mapping[str, list[Row]]]
) -> tuple[Any, list[Panel]]:
    """The figure of :func:`plot_curves` and its panels. Bounded measures keep fixed
    limits, no axis uses an offset, and each fine-tuning panel marks every run's best
    epoch (dotted)."""
    panels = curve_panels(histories)
    if not panels:
        raise ClueError(
            "None of the runs has a loss, collapse monitor or validation metric to plot (their "
            "history.csv files hold no epochs yet)."
        )
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 3.4 * rows + 0.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, Any] = {}
    for index, panel in enumerate(panels):
        axis = axes[index // columns][index % columns]
        for run, (label, history) in enumerate(zip(labels, histories, strict=True)):
            points = [
                (row["epoch"], row[panel.column])
                for row in history.get(panel.stage, [])
                if isinstance(row.get("epoch"), float) and isinstance(row.get(panel.column), float)
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            (line,) = axis.plot(
                xs, ys, marker="o", markersize=3, color=colours[run % len(colours)],
                linestyle=("-", "--", ":", "-.")[(run // len(colours)) % 4], label=label,
            )  # fmt: skip
            handles.setdefault(label, line)
            best = best_epoch(history.get(panel.stage, [])) if panel.stage == "finetune" else None
            if best is not None:
                axis.axvline(best, color=line.get_color(), linestyle=":", linewidth=1)
        low, high = panel.bounds
        if low is not None or high is not None:
            axis.set_ylim(bottom=low, top=high)
        axis.ticklabel_format(axis="y", useOffset=False, style="plain")
        axis.set_title(panel.title, fontsize=10)
        axis.set_xlabel(f"{panel.stage} epoch")
        axis.set_ylabel(panel.ylabel)
        axis.grid(True, alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.legend(
        list(handles.values()), list(handles), loc="outside lower center",
        ncols=min(len(handles), 3), fontsize=9, frameon=False,
    )  # fmt: skip
    return figure, panels


def plot_pca(
    points: Any, shares: Sequence[float], labels: Sequence[str] | None, title: str, out: Path
) -> None:
    """A scatter of ``points`` (``[N, 2]``), coloured by ``labels`` (one per point; the
    most frequent classes first, at most 20 in the legend) or in one colour."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    xy = points.numpy() if hasattr(points, "numpy") else points
    size = max(2.0, min(12.0, 4000 / max(len(xy), 1)))
    if labels is None:
        axis.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, linewidths=0)
    else:
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        # The most frequent classes first; users without a label last, in grey.
        classes = sorted(counts, key=lambda c: (c == NO_LABEL, -counts[c], c))
        colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
        for index, name in enumerate(classes):
            mask = [label == name for label in labels]
            shown = name if index < MAX_LEGEND_CLASSES else None
            colour = "0.6" if name == NO_LABEL else colours(index % colours.N)
            axis.scatter(
                xy[mask, 0], xy[mask, 1], s=size, alpha=0.6, linewidths=0, color=colour,
                label=shown and f"{name} ({counts[name]:,})",
            )  # fmt: skip
        figure.legend(loc="outside right center", fontsize=8, frameon=False, markerscale=2)
    axis.set_xlabel(f"PC 1 ({shares[0]:.1%} of the variance)")
    axis.set_ylabel(f"PC 2 ({shares[1]:.1%} of the variance)")
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3)
    _save(figure, out)


def plot_spectrum(singular: Any, title: str, out: Path) -> None:
    """The normalised singular values (``s / sum(s)``, largest first, log scale)."""
    plt = pyplot()
    values = singular.double()
    shares = (values / values.sum()).numpy()
    figure, axis = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    axis.semilogy(range(1, len(shares) + 1), shares.clip(min=1e-12), marker="o", markersize=3)
    axis.set_xlabel("singular value index")
    axis.set_ylabel("normalised singular value (log)")
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3, which="both")
    _save(figure, out)


FIGURE_FORMATS = (".png", ".svg", ".pdf")


def check_figure_path(out: Path, flag: str = "--out") -> str:
    """The figure format of ``out`` from its suffix; a ClueError for another suffix, a
    target that is not a regular file, or a file of a run directory."""
    from clue_fw.file_safety import check_user_output

    suffix = out.suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ClueError(
            f"{flag} {out}: cannot tell the figure format from the suffix "
            f"{suffix or '(none)'!r}; end the file name with .png, .svg or .pdf."
        )
    check_user_output(out, flag)
    return suffix[1:]


@contextlib.contextmanager
def matplotlib_failures(out: Path) -> Iterator[None]:
    """Turn matplotlib's failure to draw values it cannot lay out (huge or infinite
    numbers) into a ClueError that blames the values, not the file name ``out``."""
    import warnings

    try:
        with warnings.catch_warnings():  # overflow warnings come with the error below
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    except (ValueError, OverflowError, RuntimeError, MemoryError) as exc:
        raise ClueError(
            f"Cannot draw the figure {out}: matplotlib failed with {type(exc).__name__}: "
            f"{str(exc)[:300]}. The plotted values are probably out of range (huge or "
            "infinite numbers in a history.csv); check the runs' history files."
        ) from None


def _save(figure: Any, out: Path, flag: str = "--out") -> None:
    """Render ``figure`` in memory, then write it through the checked output target."""
    import io

    import matplotlib.pyplot as plt

    from clue_fw.file_safety import write_output

    try:
        fmt = check_figure_path(out, flag)
        buffer = io.BytesIO()
        with matplotlib_failures(out):
            figure.savefig(buffer, format=fmt, dpi=DPI)
        write_output(out, buffer.getvalue(), flag)
    finally:
        plt.close(figure)
