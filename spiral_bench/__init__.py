"""spiral-bench: train SPIRAL and GRPO side by side and measure them across inference compute.

See README.md for the CLI and ../DESIGN (README "Architecture") for the layout.
"""
import os as _os

__version__ = "0.1.0"


def data_dir(explicit: str | None = None) -> str | None:
    """The benchmark data folder: `explicit`, else $SPIRAL_BENCH_DATA, else None (use the hub)."""
    return explicit or _os.environ.get("SPIRAL_BENCH_DATA") or None
