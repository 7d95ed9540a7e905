"""A volume or bucket as a local directory (a NAS, a device's mount): atomic renames, fsyncs, full-disk errors."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, NoReturn

from bulkmig.core import layout
from bulkmig.core.errors import StoreError
from bulkmig.core.store.base import (
    CHUNK,
    AlreadyExists,
    ChecksumMismatch,
    DiskFull,
    NotFound,
    ObjectInfo,
    Store,
    check_key,
    is_disk_full,
    sha256_file,
)

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------- local


def _mount_point(path: Path) -> Path:
    """The mount point holding ``path`` (what an operator recognises: ``/mnt/snowball``)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def mount_device(path: Path) -> tuple[Path, str]:
    """The mount point holding ``path`` and its device as ``/proc/self/mounts`` names it (``/dev/sdb1``,
    ``tmpfs``, ``nas:/export``); the device is "" where that file does not exist."""
    mount = _mount_point(path)
    device = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].replace("\\040", " ") == str(mount):
                device = fields[0]  # the last entry wins: mounts stack on one point
    return mount, device


def no_space(path: Path, what: str, needed: int = 0) -> DiskFull:
    """The :class:`DiskFull` for a write under ``path`` (doing ``what``) that needed ``needed`` bytes."""
    mount, device = mount_device(path)
    free = shutil.disk_usage(mount).free
    on = f"device {device} mounted at {mount}" if device else str(mount)
    wanted = f"{needed:,} bytes needed, " if needed else ""
    # Space freed since the write failed (a temp file removed) or taken by writes beside it: say "now".
    now = " now (other writes at the same time filled it)" if 0 < needed <= free else ""
    return DiskFull(
        f"no space left on {on} {what}: {wanted}{free:,} free{now}",
        "free space on that device or use a larger one, then rerun: the step resumes where it stopped",
        mount=mount,
        device=device,
        free=free,
        needed=needed,
    )


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new directory entry durable (POSIX needs the directory itself synced)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems (and Windows) cannot open directories; nothing more we can do
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStore(Store):
    """A volume on a mounted filesystem: a NAS share, a removable disk, a device mounted over NFS."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def under(self, prefix: str) -> LocalStore:
        return LocalStore(self._path(prefix))

    def _makedirs(self, directory: Path) -> None:
        """Create missing directories, syncing each new entry into its parent so it survives a crash."""
        missing: list[Path] = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
            _fsync_dir(d.parent)

    def _no_space(self, key: str, needed: int) -> NoReturn:
        raise no_space(self.root, f"writing {key} into {self.url}", needed)

    def _os_error(self, exc: OSError, what: str, key: str, needed: int = 0) -> NoReturn:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._no_space(key, needed)
        raise StoreError(
            f"cannot {what} {key} in {self.url}: {exc.strerror or exc}",
            "check that the volume is mounted read-write and its permissions",
        ) from exc

    def _write_new(self, key: str, fill: Any, needed: int) -> Path:
        """Create ``<key>.<tag>.partial`` next to the final file, let ``fill(fd)`` write it, fsync it.
        Returns the temp path; removes it on any failure."""
        final = self._path(key)
        tmp = final.parent / Path(layout.temp_key(final.name, f"{os.getpid()}-{secrets.token_hex(4)}")).name
        try:
            self._makedirs(final.parent)
            free = shutil.disk_usage(final.parent).free
            if needed > free:
                self._no_space(key, needed)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                self._os_error(exc, "write", key, needed)
            raise
        return tmp

    def _publish(self, tmp: Path, key: str) -> None:
        final = self._path(key)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._os_error(exc, "publish", key)
        _fsync_dir(final.parent)

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, move: bool = False) -> tuple[str, int]:
        path = Path(path)
        size = path.stat().st_size
        final = self._path(key)
        if move and sha256 is None and self._same_device(path, final.parent):
            # The extractor writes parts next to the volume so publishing them is a rename, not a copy.
            # A rename reads no bytes, so this is the one hashing pass the caller's manifest needs.
            try:
                hashed = sha256_file(path)
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
                self._makedirs(final.parent)
                os.replace(path, final)
            except OSError as exc:
                self._os_error(exc, "publish", key, size)
            _fsync_dir(final.parent)
            return hashed

        digest = hashlib.sha256()
        copied = 0

        def fill(fd: int) -> None:
            nonlocal copied
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    copied += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ChecksumMismatch(
                    f"{path} (for {key}) has sha256 {digest.hexdigest()}, expected {sha256}",
                    "the source file changed or is damaged; nothing was stored",
                )

        self._publish(self._write_new(key, fill, size), key)
        if move:
            with contextlib.suppress(OSError):
                path.unlink()
        return digest.hexdigest(), copied

    @staticmethod
    def _same_device(path: Path, directory: Path) -> bool:
        d = directory
        while not d.exists():
            d = d.parent
        try:
            return path.stat().st_dev == d.stat().st_dev
        except OSError:
            return False

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        def fill(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        tmp = self._write_new(key, fill, len(data))
        if not if_absent:
            self._publish(tmp, key)
            return
        final = self._path(key)
        try:
            # link() refuses an existing name, so "create if absent" and "visible only when complete"
            # hold together.  Filesystems without hard links (exFAT, some FUSE) fall back to O_EXCL.
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise AlreadyExists(f"{key} already exists in {self.url}", "another writer got there first") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    self._os_error(exc, "write", key, len(data))
                self._put_exclusive(key, data)
            _fsync_dir(final.parent)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _put_exclusive(self, key: str, data: bytes) -> None:
        final = self._path(key)
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise AlreadyExists(f"{key} already exists in {self.url}", "another writer got there first") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                final.unlink()
            self._os_error(exc, "write", key, len(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path") from None
        except OSError as exc:
            self._os_error(exc, "read", key)

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=layout.TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if is_disk_full(exc):
                raise no_space(path.parent, f"copying {key} to {path}", src.stat().st_size) from None
            raise

    @contextlib.contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path")
        yield path

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._os_error(exc, "stat", key)
        return ObjectInfo(key, st.st_size) if S_ISREG(st.st_mode) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return iter(())
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=None):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # removed while we walked
                    st = os.stat(os.path.join(dirpath, name))
                    found.append(ObjectInfo(key, st.st_size))
        found.sort(key=lambda info: info.key)
        return iter(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._os_error(exc, "delete", key)
        _fsync_dir(path.parent)

    def sha256(self, key: str) -> str:
        try:
            return sha256_file(self._path(key))[0]
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path") from None
        except OSError as exc:
            self._os_error(exc, "read", key)

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(_mount_point(self.root)).free
