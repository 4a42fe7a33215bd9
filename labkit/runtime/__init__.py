"""The only code that talks to a container engine."""

from labkit.runtime.docker import DockerRuntime, ExecError, ExecResult, engine_available

__all__ = ["DockerRuntime", "ExecError", "ExecResult", "engine_available"]
