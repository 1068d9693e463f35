"""Atomic file writing: nothing half-written is ever left under the final name."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file private (0600), and some writers (safetensors' save_file) replace it by a
        # new 0600 file: after the write, give it the permissions a plain open() would under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries a killed writer of ``path`` left beside it; returns what was removed.

    :func:`atomic_path` removes its temporary on any exception, but nothing runs on SIGKILL; a resumed run
    calls this before writing ``path`` again. Only one process may write ``path`` at a time.
    """
    final = Path(path)
    stale = [Path(p) for p in glob.glob(os.path.join(glob.escape(os.fspath(final.parent)),
                                                     f".{glob.escape(final.name)}.*.tmp"))]
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale
