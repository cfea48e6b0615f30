"""File output shared by the CLI and the demo."""

from __future__ import annotations

import os
import stat
import tempfile


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written model.

    The file gets the permissions of a plain ``open(path, "wb")``: an existing file's mode is
    kept, a new file gets 0o666 less the umask (``mkstemp`` alone would leave it 0o600). The
    temporary file is removed when writing fails (or is interrupted)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mode_for(path: str | os.PathLike) -> int:
    """The permission bits for ``path``: its current ones if it exists, else 0o666 & ~umask.

    Reading the umask sets it for a moment (``os.umask`` is the only portable way), and the
    umask is process-wide: a file another thread creates at that very moment gets umask 0o022
    instead of its own. Harmless for the CLI and the demo, which write from one thread."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
