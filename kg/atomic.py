"""Files that appear whole or not at all: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Like `open(path, mode)`; on an exception the previous file (if any) is left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # on disk before it takes the old file's name
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C may land after the rename, when there is no temporary file left
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sibling_directory(target: Path) -> Path:
    """An empty directory beside `target`, on the same file system, to build into."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
    return tmp


def replace_directory(built: Path, target: Path) -> None:
    """Put the finished directory `built` where `target` is.

    Two renames: for an instant between them `target` is absent (a reader then fails and can retry);
    a half-built directory is never visible under `target`."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old)
