"""Files written whole or not at all: readers never see half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def replaced_atomically(path: str, newline: str | None = None) -> Iterator[TextIO]:
    """A text file to write in place of ``path``: written to ``path.tmp``, then
    renamed over ``path`` when the block ends without an exception, and
    removed when it raises: ``path`` is left as it was."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", newline=newline) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
