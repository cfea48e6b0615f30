"""File output shared by the CLI and the demo: a model file appears whole or not at all, and
no interruption leaves a temporary file behind, SIGKILL included.

Where the system has it (Linux ``O_TMPFILE``), the model is written into an unnamed file in
the output folder and linked into place once complete: until then the kernel owns it, and
frees it with the process, however the process ends. Replacing an existing file takes one
more step (link under a temporary name, then rename over the target), and a kill between the
two leaves that name. Where ``O_TMPFILE`` is missing (other systems, some file systems), the
model is written under such a temporary name from the start.

A temporary name is ``.<name>.<random>.quantkit-part``, and its writer holds an advisory lock
(``flock``) on it as long as it lives; the kernel drops the lock with the process. Each write
first removes the temporary files in its folder whose lock is free: those of runs that died.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so stale files are never judged stale
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PART_SUFFIX = ".quantkit-part"
# open(O_TMPFILE) failing with these means "not here" (old kernel, file system without it).
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see the module doc).

    The file gets the permissions of a plain ``open(path, "wb")``: an existing file keeps its
    mode, a new one gets 0o666 less the umask.

    Raises:
        OSError: with ``filename`` = ``path`` (never a temporary name): the folder is missing
            or not writable, the disk is full, ...
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    try:
        remove_stale_parts(folder)
        mode = _existing_mode(path)
        if not _write_unnamed(folder, name, data, mode):
            _write_named(folder, name, data, mode)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), path) from None


def remove_stale_parts(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files in ``folder`` whose writer is gone (their lock is free);
    returns their names."""
    if fcntl is None:
        return []
    removed: list[str] = []
    try:
        with os.scandir(folder) as entries:
            parts = [e.path for e in entries if e.name.startswith(".")
                     and e.name.endswith(PART_SUFFIX)]
    except OSError:  # a missing folder: the write itself will say so
        return removed
    for part in parts:
        with contextlib.suppress(OSError):
            fd = os.open(part, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer lives
                os.unlink(part)
                removed.append(os.path.basename(part))
            finally:
                os.close(fd)
    if removed:
        log.info("removed %d temporary file(s) of interrupted runs in %s", len(removed), folder)
    return removed


def _existing_mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _write_all(fd: int, data: bytes, mode: int | None) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if mode is not None:
        os.fchmod(fd, mode)


def _part_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}{PART_SUFFIX}"


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _write_unnamed(folder: str, name: str, data: bytes, mode: int | None) -> bool:
    """The ``O_TMPFILE`` route; False where the system or file system lacks it."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(folder, flag | os.O_WRONLY, 0o666)  # the kernel applies the umask
    except OSError as e:
        if e.errno in _NO_TMPFILE:
            return False
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(fd)
        _write_all(fd, data, mode)
        # dst_dir_fd makes os.link call linkat(AT_SYMLINK_FOLLOW): it links the file that
        # /proc/self/fd/N names, not the symlink itself.
        source = f"/proc/self/fd/{fd}"
        try:
            os.link(source, name, dst_dir_fd=dir_fd)
            return True
        except FileExistsError:
            pass
        part = _part_name(name)
        os.link(source, part, dst_dir_fd=dir_fd)
        try:
            os.replace(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part, dir_fd=dir_fd)
            raise
        return True
    finally:
        os.close(dir_fd)
        os.close(fd)


def _write_named(folder: str, name: str, data: bytes, mode: int | None) -> None:
    """The portable route: a locked temporary name, renamed over ``name`` when complete."""
    part, fd = _open_part(folder, name)
    try:
        _write_all(fd, data, mode)
        os.replace(part, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    finally:
        os.close(fd)


def _open_part(folder: str, name: str) -> tuple[str, int]:
    """A new temporary file, locked. Another run's ``remove_stale_parts`` may take it between
    its creation and the lock; then it is gone by the time the lock is ours, and we retry."""
    for _ in range(3):
        part = os.path.join(folder, _part_name(name))
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        _lock(fd)
        try:
            if os.stat(part).st_ino == os.fstat(fd).st_ino:
                return part, fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EAGAIN, "temporary files keep vanishing", folder)
