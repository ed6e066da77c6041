"""Durable file operations of the checkpoint writer. Pure module: no MPI, no h5py.

The commit protocol: write a temporary name → flush → fsync the file → rename to the final
name → fsync the directory. Final names are published without clobbering (``os.link`` fails
if the name exists), so two writers can never silently replace each other's files.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path

HASH_BLOCK = 16 << 20

crash_hook = None
"""Fault-injection seam for tests: when set, called as ``crash_hook(label)`` at every step
of the commit protocol (a test's hook may SIGKILL its own process there). None in production."""


def crash_point(label: str) -> None:
    """Mark a step of the protocol (no-op unless a test installed ``crash_hook``)."""
    if crash_hook is not None:
        crash_hook(label)


def tmp_name(final: Path) -> Path:
    """A unique temporary sibling of ``final`` (never collides with another writer's)."""
    return final.with_name(f"{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def is_tmp_name(name: str) -> bool:
    return ".tmp-" in name


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path (directories: makes renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, block: int = HASH_BLOCK) -> tuple[int, str]:
    """(size in bytes, hex sha256) of a file, read in large blocks into one reused buffer."""
    digest, buf = hashlib.sha256(), bytearray(block)
    view, total = memoryview(buf), 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            total += n
    return total, digest.hexdigest()


def fsync_and_hash(path: Path) -> tuple[int, str]:
    """fsync ``path`` while hashing it: the flush waits on the disk, the hash on the CPU (both
    release the GIL), so the sha256 costs little extra time. Returns (size, sha256)."""
    errors: list[BaseException] = []

    def flush():
        try:
            fsync_path(path)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=flush, name="mpips-ckpt-fsync")
    thread.start()
    try:
        result = sha256_file(path)
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return result


def publish(tmp: Path, final: Path, *, clobber: bool) -> None:
    """Give the durable file ``tmp`` its final name, then fsync the directory.

    ``clobber=False`` raises FileExistsError (leaving both files) if ``final`` exists; the
    hard link makes the check and the publication one atomic step."""
    if clobber:
        os.replace(tmp, final)
    else:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError:  # filesystem without hard links: check, then rename
            if final.exists():
                raise FileExistsError(final) from None
            os.replace(tmp, final)
        else:
            crash_point("linked")
            os.unlink(tmp)
    fsync_path(final.parent)


def write_bytes_durably(final: Path, data: bytes, *, clobber: bool) -> None:
    """tmp → write → flush → fsync → publish(final) → fsync dir."""
    tmp = tmp_name(final)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            crash_point("small-file-written")
            f.flush()
            os.fsync(f.fileno())
        crash_point("small-file-synced")
        publish(tmp, final, clobber=clobber)
    finally:
        if tmp.exists():
            tmp.unlink()
