"""The five figures of the report (matplotlib; see :mod:`tuiprune.report.figures` for sizes,
colours and style). Each function takes the runs and returns its :class:`Figure` (s), drawn or
with the reason they are not; the numbers come from :mod:`tuiprune.report.figdata`."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

from tuiprune.format import printable
from tuiprune.report import figdata
from tuiprune.report.figures import Figure, Run, new_figure, png_bytes

MAX_MAPS = 8          # heat maps drawn (one per run); the rest are named in a note
MAX_STATE_LABELS = 12
MAX_MARKED = 60       # epochs per run up to which each point gets a marker
NO_SYSTEM = ("no system data in the log (a run from before system events, or "
             "run.system_seconds = 0)")


def label(run: Run, width: int = 40) -> str:
    """The run's label as plain figure text (no mathtext, bounded length)."""
    text = printable(run.label, newlines=False).replace("$", r"\$")
    return text if len(text) <= width else text[:width - 1] + "…"


def floats(values: Sequence[Optional[float]]) -> List[float]:
    return [math.nan if v is None else float(v) for v in values]


def _legend(ax, runs: Sequence[Run], named: Sequence[Run],
            extra: Sequence[Tuple[str, dict]] = (), loc="best"):
    """The ``named`` runs in their colours (when the report has several ``runs``), then the
    line styles."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=r.colour, marker=r.marker, label=label(r))
               for r in named] if len(runs) > 1 else []
    handles += [Line2D([], [], label=text, **style) for text, style in extra]
    if handles:
        ax.legend(handles=handles, loc=loc, framealpha=0.85)


def _state_labels(ax, offsets: dict, per: Optional[int]) -> None:
    """``s0``, ``s1``, … along the top of an axis whose x counts epochs over the run."""
    if not per:
        return
    every = max(1, math.ceil(len(offsets) / MAX_STATE_LABELS))
    shown = [(off + per / 2 + 0.5, f"s{s}") for s, off in offsets.items() if s % every == 0]
    top = ax.secondary_xaxis("top")
    top.set_xticks([x for x, _ in shown], [text for _, text in shown], fontsize=7,
                   color="0.35")
    top.tick_params(length=0)


def accuracy(runs: Sequence[Run]) -> List[Figure]:
    title = "Accuracy per epoch"
    curves = [(r, figdata.epoch_curve(r.log)) for r in runs]
    if not any(c.x for _, c in curves):
        return [Figure("accuracy", title, note="no finished epoch in the log")]
    fig, ax = new_figure()
    marked = max(len(c.x) for _, c in curves) <= MAX_MARKED
    for r, c in curves:
        ax.plot(c.x, floats(c.val), color=r.colour, marker=r.marker if marked else None)
        ax.plot(c.x, floats(c.train), color=r.colour, ls=":")
        if c.has_test:
            ax.plot(c.x, floats(c.test), color=r.colour, ls="--", lw=1.0)
        for x in c.steps:
            ax.axvline(x, color=r.colour, ls=(0, (4, 3)), lw=0.8, alpha=0.45)
        for x, before, after in c.cuts:
            if before is not None and after is not None:
                ax.vlines(x, min(before, after), max(before, after), color=r.colour, lw=1.2)
            if after is not None:
                ax.plot([x], [after], marker="v", color=r.colour, ms=6, ls="none")
    first = runs[0].log
    _state_labels(ax, figdata.state_offsets(first), figdata.epochs_per_state(first))
    ax.set(title=title, xlabel="epoch (over the whole run)", ylabel="accuracy (%)")
    styles = [("val", {"color": "0.3", "ls": "-", "marker": "o"}),
              ("train", {"color": "0.3", "ls": ":"})]
    if any(c.has_test for _, c in curves):
        styles.append(("test", {"color": "0.3", "ls": "--"}))
    styles.append(("pruning step", {"color": "0.3", "ls": (0, (4, 3)), "lw": 0.8}))
    if any(c.cuts for _, c in curves):
        styles.append(("hard cut (val after)", {"color": "0.3", "marker": "v", "ls": "none"}))
    _legend(ax, runs, runs, styles, loc="lower right")
    return [Figure("accuracy", title, "Train, val and test accuracy at each epoch's end; "
                   "dashed verticals: pruning steps; ▼: val accuracy right after an RSST "
                   "hard cut (the bar spans before → after).", png_bytes(fig))]


def accuracy_vs_sparsity(runs: Sequence[Run]) -> List[Figure]:
    title = "Accuracy vs sparsity"
    points = [(r, figdata.accuracy_vs_sparsity(r.log)) for r in runs]
    if not any(p for _, p in points):
        return [Figure("acc_vs_sparsity", title, note="no finished state in the log")]
    fig, ax = new_figure()
    for r, pts in points:
        if not pts:
            continue
        xs, ys = [p[1] for p in pts], [p[2] for p in pts]
        ax.plot(xs, ys, color=r.colour, marker=r.marker, ms=5)
        if len(runs) <= 4:
            for s, x, y in pts:
                ax.annotate(f"s{s}", (x, y), textcoords="offset points", xytext=(3, 4),
                            fontsize=7, color=r.colour)
    ax.set(title=title, xlabel="sparsity of the prunable weights (%)",
           ylabel="val accuracy (%)")
    _legend(ax, runs, [r for r, p in points if p], loc="lower left")
    return [Figure("acc_vs_sparsity", title, "One point per state: the val accuracy of the "
                   "model the state ends with (RSST: after its hard cut; Refill: its best "
                   "epoch) at the sparsity it ends with.", png_bytes(fig))]


def _heat_map(fig, axes, grid: figdata.SparsityGrid, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    blocks, states = len(grid.attn), len(grid.states)
    image = None
    for ax, values, what in ((axes[0], grid.attn, "attention heads"),
                             (axes[1], grid.mlp, "MLP neurons")):
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto",
                          interpolation="nearest")
        ax.set(title=what, xlabel="state")
        ax.set_xticks(range(states), [str(s) for s in grid.states])
        ax.set_yticks(range(blocks))
        ax.grid(False)
        if blocks <= 12 and states <= 6:
            for b in range(blocks):
                for i in range(states):
                    v = values[b][i]
                    ax.text(i, b, f"{v:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if v < 60 else "black")
        if len(grid.states) > MAX_STATE_LABELS:
            ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    axes[0].set_ylabel("block")
    fig.colorbar(image, ax=list(axes), label="sparsity (%)", shrink=0.9)
    fig.suptitle(title, fontsize=10)


def sparsity_maps(runs: Sequence[Run]) -> List[Figure]:
    out = []
    for r in runs[:MAX_MAPS]:
        key = "sparsity" if len(runs) == 1 else f"sparsity-{r.index + 1}"
        title = "Per-layer sparsity" + ("" if len(runs) == 1 else f": {label(r)}")
        grid = figdata.sparsity_grid(r.log)
        if grid is None:
            out.append(Figure(key, title, note="no finished state in the log"))
            continue
        fig, axes = new_figure(ncols=2, sharey=True)
        _heat_map(fig, axes, grid, title)
        out.append(Figure(key, title, "Share of each block's heads (left) and MLP neurons "
                          "(right) pruned in the model each state ends with (percent).",
                          png_bytes(fig)))
    if len(runs) > MAX_MAPS:
        out.append(Figure("sparsity-more", "Per-layer sparsity", note=f"heat maps drawn for "
                          f"the first {MAX_MAPS} runs only ({len(runs) - MAX_MAPS} more)"))
    return out


def lambda_figure(runs: Sequence[Run]) -> List[Figure]:
    title = "RSST λ over each state's steps"
    curves = [(r, figdata.lambda_curves(r.log)) for r in runs]
    if not any(c for _, c in curves):
        return [Figure("lambda", title, note="no lambda events in the log (only RSST "
                       "states that squeeze a target have λ)")]
    fig, ax = new_figure()
    positive = all(y > 0 for _, c in curves for _, _, ys in c for y in ys)
    for r, states in curves:
        per = figdata.steps_per_state(r.log)
        for s, xs, ys in states:
            ax.plot(xs, ys, color=r.colour, lw=1.2)
            if per:
                ax.axvline(s * per, color=r.colour, ls=(0, (4, 3)), lw=0.8, alpha=0.45)
    ax.set_yscale("log" if positive else "symlog", **({} if positive else
                                                     {"linthresh": 1e-8}))
    ax.set(title=title, xlabel="optimizer step (over the run)", ylabel="λ")
    _legend(ax, runs, [r for r, c in curves if c],
            [("state start", {"color": "0.3", "ls": (0, (4, 3)), "lw": 0.8})],
            loc="lower right")
    return [Figure("lambda", title, "The RSST regularisation strength λ at each logged "
                   "optimizer step (down-sampled), log scale; dashed verticals: state starts.",
                   png_bytes(fig))]


def _time_unit(span: float) -> Tuple[float, str]:
    if span <= 180:
        return 1.0, "s"
    return (60.0, "min") if span <= 3 * 3600 else (3600.0, "h")


def system(runs: Sequence[Run]) -> List[Figure]:
    title = "Throughput and GPU"
    data = [(r, *figdata.system_curve(r.log)) for r in runs]
    data = [(r, t, p) for r, t, p in data if t]
    if not data:
        return [Figure("system", title, note=NO_SYSTEM)]
    scale, unit = _time_unit(max(t[-1] for _, t, _ in data))
    fig, (top, bottom) = new_figure(tall=True, nrows=2, sharex=True)
    has_util = False
    for r, t, p in data:
        x = [v / scale for v in t]
        top.plot(x, floats([q.images_per_s for q in p]), color=r.colour)
        util = floats([q.gpu_util for q in p])
        has_util = has_util or any(not math.isnan(v) for v in util)
        bottom.plot(x, util, color=r.colour)
        bottom.plot(x, floats([None if q.data_wait is None else 100 * q.data_wait for q in p]),
                    color=r.colour, ls=":")
    top.set(title=title, ylabel="images/s")
    top.set_ylim(bottom=0)
    bottom.set(xlabel=f"time since the run started ({unit})", ylabel="percent",
               ylim=(0, 105))
    if not has_util:
        why = next((r.log.system.unavailable for r, _, _ in data if r.log.system.unavailable),
                   "")
        note = "no GPU utilisation in the log" + (f"\n({printable(why)[:60]})" if why else "")
        bottom.text(0.01, 0.97, note, transform=bottom.transAxes, ha="left", va="top",
                    fontsize=7, color="0.3", bbox={"facecolor": "white", "alpha": 0.85,
                                                   "edgecolor": "none"})
    _legend(bottom, runs, [r for r, _, _ in data],
            [("GPU utilisation", {"color": "0.3"}), ("data wait", {"color": "0.3", "ls": ":"})],
            loc="upper right")
    missing = [label(r) for r in runs if r not in [d[0] for d in data]]
    caption = ("Training images per second of step time, and the GPU's utilisation with the "
               "share of step time spent waiting for data, at each `system` sample.")
    if missing:
        caption += f" No system data: {', '.join(missing)}."
    return [Figure("system", title, caption, png_bytes(fig))]
