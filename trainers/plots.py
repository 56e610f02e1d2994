"""Plots of training metrics over steps (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_PANELS", "plot_comparison", "plot_training"]

#: Panels of :func:`plot_training`: a title and the metric keys drawn in it.
TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward/mean", "reward/solved_frac")),
    ("KL", ("loss/kl", "ppo/approx_kl", "rollout_corr/kl", "rollout_corr/k3_kl")),
    ("rollout correction", ("rollout_corr/ess", "rollout_corr/ratio_max",
                            "rollout_corr/rejected_token_frac", "rollout_corr/weight_mean")),
    ("loss", ("loss/policy", "loss/value", "loss/entropy")),
    ("optimisation", ("grad/norm", "ppo/clip_frac")),
)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        v = row.get(key)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            continue
        xs.append(float(row.get("step", i + 1)))
        ys.append(float(v))
    return xs, ys


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training(history: Sequence[Mapping[str, float]], path: str | Path, *,
                  title: str = "training") -> Path:
    """Save a PNG with one panel per group of :data:`TRAINING_PANELS` (keys never logged
    are skipped; panels with nothing to show are left out).

    Args:
        history: one metrics dict per step (with a ``"step"`` key).
        path: the PNG to write (parent directories are created).
        title: the figure title.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    panels = [(name, [k for k in keys if _series(history, k)[0]])
              for name, keys in TRAINING_PANELS]
    panels = [(n, ks) for n, ks in panels if ks] or [("reward", [])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True,
                             squeeze=False)
    for ax, (name, keys) in zip(axes[:, 0], panels):
        for key in keys:
            xs, ys = _series(history, key)
            ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=key)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, axes, path, title)


def plot_comparison(runs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str],
                    path: str | Path, *, title: str = "", log_keys: Sequence[str] = ()
                    ) -> Path:
    """Save a PNG with one panel per metric key and one line per run.

    Args:
        runs: run name -> its per-step metrics.
        keys: the metrics to draw, one panel each.
        path: the PNG to write.
        title: the figure title.
        log_keys: keys drawn on a log y axis.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), sharex=True,
                             squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for name, history in runs.items():
            xs, ys = _series(history, key)
            ax.plot(xs, ys, label=name)
        ax.set_title(key, fontsize=10)
        if key in log_keys:
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, axes, path, title)


def _save(plt: Any, fig: Any, axes: Any, path: str | Path, title: str) -> Path:
    """Label the shared x axis, add the title, write the PNG and free the figure."""
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
