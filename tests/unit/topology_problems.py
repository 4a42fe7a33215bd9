"""`problems(text)`: the messages a topology text is refused with (exit code 2)."""

from __future__ import annotations

import pytest

from labkit.errors import TopologyError
from labkit.topology import parse_topology


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source="t.yaml")
    assert caught.value.exit_code == 2
    return [str(problem) for problem in caught.value.problems]
