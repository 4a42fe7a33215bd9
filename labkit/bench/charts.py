"""What the benches' PNGs share: matplotlib without a display, one look, one save."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported here: only charts need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_panel_style(axis: Any, y_margin: float) -> None:
    """Light horizontal grid behind the bars, room above them for their labels."""
    axis.grid(axis="y", alpha=0.3)
    axis.set_axisbelow(True)
    axis.margins(y=y_margin)


def save(figure: Any, png: Path) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    pyplot().close(figure)
