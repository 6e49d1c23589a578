"""The report's pictures, drawn by matplotlib (focalinfer[plot]) as PNG bytes; None without it."""

from __future__ import annotations

import io

PALETTE = ("#2f5fa7", "#d9822b", "#0e7c3a", "#b42318", "#7a5195", "#5f6b7a", "#bc5090", "#1f9aa8")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def accuracy_plot(names: list[str], figures: list[dict]) -> bytes | None:
    """Acc@1 and Acc@5 of each run with their 95 % intervals as error bars."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 0.55 * len(names) + 1.7))
    rows = list(range(len(names)))[::-1]
    for offset, key, colour in ((0.13, "Acc@1", PALETTE[0]), (-0.13, "Acc@5", PALETTE[1])):
        values = [f[key] for f in figures]
        lows = [max(0.0, f[key] - f[f"{key}_ci95"][0]) for f in figures]
        highs = [max(0.0, f[f"{key}_ci95"][1] - f[key]) for f in figures]
        ax.errorbar(values, [r + offset for r in rows], xerr=[lows, highs], fmt="o", color=colour, capsize=4,
                    label=f"{key} (95 % interval)")
    ax.set_yticks(rows, names)
    ax.set_xlabel("accuracy (%)")
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    return _png(fig, plt)


def speed_plot(points: list[tuple[str, int, float]]) -> bytes | None:
    """images/s against batch size, one line per series (the runs by backend, the bench sweeps)."""
    plt = _pyplot()
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 3.8))
    series = sorted({p[0] for p in points}, key=lambda name: (name.startswith("bench"), name))
    for i, name in enumerate(series):
        xy = sorted((b, v) for s, b, v in points if s == name)
        style = "--" if name.startswith("bench") else "-"
        ax.plot([b for b, _ in xy], [v for _, v in xy], style, marker="o", color=PALETTE[i % len(PALETTE)], label=name)
    batches = sorted({p[1] for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig, plt)
