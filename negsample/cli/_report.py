"""What the command prints and draws at the end: the tables of the runs and the curves."""

from __future__ import annotations

import statistics
from pathlib import Path

from negsample.cli._train import Run


def summary(title: str, runs: list[Run], rows: list[dict[str, float]]) -> str:
    """A table: per run, epochs run, the epoch of the weights, median s/epoch, metrics."""
    metric_names = [k for k in rows[0] if "@" in k]
    lines = [
        title,
        f"{'run':>8} {'epochs':>6} {'chosen':>6} {'s/epoch':>8} "
        + " ".join(f"{m:>10}" for m in metric_names),
    ]
    for run, row in zip(runs, rows, strict=True):
        median = statistics.median(h["seconds"] for h in run.history)
        lines.append(
            f"{run.config.name:>8} {len(run.history):>6} {run.best_epoch:>6} {median:>8.2f} "
            + " ".join(f"{row[m]:>10.4f}" for m in metric_names)
        )
    lines.append("(s/epoch: median seconds of training per epoch, evaluation not included)")
    return "\n".join(lines)


def comparison(runs: list[Run], k: int) -> str:
    """The recipes side by side: validation Recall@k and NDCG@k at each run's chosen epoch."""
    width = max(len(run.config.label) for run in runs)
    lines = [
        "comparison on the validation split, at each run's chosen epoch:",
        f"{'recipe':<{width}} {'chosen':>6} {f'recall@{k}':>10} {f'ndcg@{k}':>10}",
    ]
    for run in runs:
        row = run.history[run.best_epoch - 1]
        lines.append(
            f"{run.config.label:<{width}} {run.best_epoch:>6} "
            f"{row[f'recall@{k}']:>10.4f} {row[f'ndcg@{k}']:>10.4f}"
        )
    return "\n".join(lines)


def plot(path: Path, runs: list[Run], k: int, fmt: str = "png") -> None:
    """Validation (else test) Recall and NDCG per epoch, a star at each run's chosen epoch.

    Written to ``path`` exactly (matplotlib would add an extension to a name without one)
    in the format ``fmt``. A run without a point (a time budget spent before the first
    evaluation) has no curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"recall@{k}", f"ndcg@{k}"]
    first = runs[0].history
    prefix, where = ("", "validation") if any(names[0] in h for h in first) else ("test ", "test")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5))
    for ax, metric in zip(axes, names, strict=True):
        key = prefix + metric
        for run in runs:
            points = [(h["epoch"], h[key]) for h in run.history if key in h]
            if not points:
                continue
            epochs, values = zip(*points, strict=True)
            (line,) = ax.plot(epochs, values, marker=".", label=run.config.label)
            chosen = run.history[run.best_epoch - 1]
            if key in chosen:
                ax.plot(
                    run.best_epoch, chosen[key], marker="*", markersize=14, color=line.get_color()
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{where} {metric}")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=fmt)
    plt.close(fig)
