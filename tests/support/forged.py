"""Values someone with write access to Redis could leave there, for tests of what the service
refuses to run or unfold."""
from __future__ import annotations

from pathlib import Path


class Trap:
    """Pickles into a call of open(path, "w"): unpickling it creates the marker file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def shared_lists(levels: int) -> list:
    """A list that refers to one list twice, that one to another twice, ... levels deep:
    a pickle of a few hundred bytes that unfolds into 2**levels lists."""
    node: list = ["x" * 10]
    for _ in range(levels):
        node = [node, node]
    return node
