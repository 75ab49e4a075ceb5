"""The one error a source raises when it cannot be fetched or read."""

from __future__ import annotations

from ..errors import ResNetCoreError


class SourceError(ResNetCoreError, ValueError):
    """A named source (hub repo, torchvision tag, folder) is unavailable, unknown, corrupt or not a ResNet."""

    def __init__(self, source: str, problem: str, hint: str = ""):
        self.source, self.problem, self.hint = source, problem, hint
        super().__init__(f"{source}: {problem}" + (f". {hint}" if hint else ""))
