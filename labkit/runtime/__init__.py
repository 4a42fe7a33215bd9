"""The only code that talks to a container engine."""

from labkit.runtime.base import ExecError, ExecResult, Runtime
from labkit.runtime.docker import DockerRuntime, engine_available

__all__ = ["DockerRuntime", "ExecError", "ExecResult", "Runtime", "engine_available"]
