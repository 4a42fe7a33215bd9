"""Programs labkit copies onto nodes and runs there (standard library only).

They are read as text (`source`) and written to the node; nothing in labkit
imports them. Each reads a JSON configuration that labkit rewrites, so a
change needs no restart.
"""

from __future__ import annotations

from importlib import resources


def source(name: str) -> str:
    """The text of the agent `name` (a module of this package)."""
    return resources.files(__name__).joinpath(f"{name}.py").read_text()
