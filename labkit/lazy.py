"""Names a package exports, imported on first use (PEP 562).

`labkit --help` and every `labkit exec` then start without loading the whole
library, and a submodule that needs no model does not pay for pydantic.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: name -> the module that defines it (a name
    that is itself a submodule, `labkit.expect`, is that module). Each is cached in
    `namespace`, the package's globals, at its first use."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if module == f"{package}.{name}" else getattr(imported, name)
        namespace[name] = value
        return value

    return __getattr__
