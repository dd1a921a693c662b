"""The owner of a run directory: an exclusive ``fcntl.flock`` on its ``.lock`` file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from clue_fw.errors import RunDirectoryError
from clue_fw.running.layout import LOCK_FILE
from clue_fw.running.os_errors import kind_of, os_reason, output_error

try:  # POSIX only; without it (Windows) runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]


#: What flock(LOCK_NB) fails with while another open file description holds the lock.
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def held_elsewhere(lock_path: Path) -> bool:
    """Whether another open file description (a live run) holds the flock on
    ``lock_path``. A lock file that cannot be opened (a symbolic link, unreadable) holds
    no run through clue_fw; without ``fcntl`` (Windows) nothing is ever held."""
    if fcntl is None:  # pragma: no cover - Windows: runs are not locked
        return False
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in _HELD
    finally:
        os.close(fd)
    return False


class DirectoryLock:
    """An exclusive lock on ``<run_dir>/.lock`` (``fcntl.flock``), from acquire to release.

    A flock belongs to an open file description: a second ``open`` of the file, in this
    process or another, cannot take it while the first holds it, and the kernel drops
    it when its holder dies. :meth:`claim` writes the holder's PID into the file so
    that a refused run can name it; :meth:`release` empties the file again.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None
        self._claimed = False
        self.created = False  # acquire() created the lock file

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunDirectoryError` naming the holder's PID."""
        if fcntl is None:  # pragma: no cover - Windows: runs are not locked
            return
        flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirectoryError(
                    f"{self.path} is a symbolic link; clue_fw's lock file must be a plain file. "
                    f"Remove it, or choose another run directory than {self.run_dir}."
                ) from None
            raise RunDirectoryError(
                f"Cannot create the lock file {self.path}: {os_reason(exc)}. A run needs a "
                f"writable directory; choose another --out than {self.run_dir}."
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirectoryError(
                f"{self.path} is {kind_of(self.path)}; clue_fw's lock file must be a regular "
                f"file. Remove it, or choose another run directory than {self.run_dir} (a "
                "directory without recipe.yaml holds nothing to resume: start the run again "
                "with --out)."
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in _HELD:
                raise RunDirectoryError(
                    f"{self.run_dir} is in use by another clue_fw run (PID {holder}), which "
                    f"holds its lock file {self.path}. Two runs must not write one directory: "
                    "wait until that run ends or stop it, or choose another --out."
                ) from None
            raise RunDirectoryError(
                f"Cannot lock {self.path}: {os_reason(exc)}. clue_fw locks a run directory "
                "so that two runs never write it; put runs on a file system that supports "
                "flock."
            ) from None
        self._fd = fd

    def claim(self) -> None:
        """Record this process's PID in the lock file (the lock must be held)."""
        if self._fd is None:
            return
        try:
            self._claimed = True
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise output_error(self.path, exc, self.run_dir) from None

    def release(self, remove: bool = False) -> None:
        """Drop the lock (idempotent), emptying the lock file if :meth:`claim` wrote it:
        a run that was refused before it claimed the directory leaves the file as it was.
        ``remove`` deletes the lock file too when :meth:`acquire` created it (a run refused
        in a directory it just made leaves nothing behind)."""
        if self._fd is None:
            return
        if remove and self.created:
            try:
                self.check_owned()
                self.path.unlink()  # while still held: no other run can have taken it
            except (OSError, RunDirectoryError):
                pass
        fd, self._fd = self._fd, None
        if self._claimed:
            self._claimed = False
            try:
                os.ftruncate(fd, 0)  # still held: no other run can be reading a PID
            except OSError:
                pass
        os.close(fd)

    def check_owned(self) -> None:
        """Raise :class:`RunDirectoryError` unless the locked file is still ``.lock`` of
        the run directory: same inode at the same path, not deleted. Someone who removed
        or replaced the directory during the run (``rm -rf``, another run's --overwrite of
        a parent) would otherwise see this run write into, or re-create, a directory it
        no longer owns."""
        if self._fd is None:
            return
        try:
            mine = os.fstat(self._fd)
            there: os.stat_result | None = os.lstat(self.path)
        except OSError:
            there = None
        if (
            there is None
            or mine.st_nlink == 0
            or (there.st_ino, there.st_dev) != (mine.st_ino, mine.st_dev)
        ):
            raise RunDirectoryError(
                f"The run directory {self.run_dir} was removed or replaced by someone else "
                f"while the run was going (its lock file {self.path} is no longer the one this "
                "run locked). The run stopped and writes nothing more there; start it again "
                "with --out."
            )

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
