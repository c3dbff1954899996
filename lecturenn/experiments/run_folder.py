"""A run folder's life: nothing lost, nothing half-written.

A run in progress lives in ``DIR.partial/`` beside the ``--out DIR`` it was asked for, holding its
config, metrics and checkpoints; only when it has finished (summary written) is it renamed to
``DIR``. So a folder named ``DIR`` always holds a finished run (or the user's own files, which a
run never touches), and a killed or failed run leaves ``DIR`` as it was:

- a new run refuses a ``DIR`` that is not empty, and a ``DIR.partial`` (an unfinished run),
  unless ``--overwrite`` asks to replace them — then the finished run replaces the old ``DIR``
  only at the end, in two renames;
- ``--resume DIR`` continues ``DIR.partial`` if there is one (an interrupted run), else extends
  the finished run ``DIR`` (moved back to ``DIR.partial`` while it trains);
- a run that fails before its first checkpoint leaves nothing behind.

While a run writes its folder it holds an exclusive lock on ``.lock`` there (released by the
kernel when the process dies, even by SIGKILL), so two processes cannot interleave a folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lecturenn.errors import UserError
from lecturenn.io import fsync_dir

PARTIAL = ".partial"
LOCK = ".lock"


def staging_of(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL)


def check_out(out) -> Path:
    """``out`` made absolute; a path that runs through a file is refused."""
    out = Path(out).expanduser().absolute()
    if out.name in ("", ".", ".."):
        raise UserError(f"--out {out}: name a folder for the run, e.g. runs/my_run")
    for parent in [out, *out.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"--out {out}: {parent} is a file, not a folder")
            break
    return out


def is_empty(folder: Path) -> bool:
    return folder.is_dir() and not any(p.name != LOCK for p in folder.iterdir())


def writable_parent(out: Path) -> None:
    """Create ``out``'s parent folders; an unwritable place is a user error naming it."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create {out.parent} ({error.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {out.parent} (permission denied)")


def check_new(out: Path, overwrite: bool) -> None:
    """A new run into ``out``: refuse what it would replace, unless ``overwrite``."""
    staging = staging_of(out)
    if out.exists() and not is_empty(out) and not overwrite:
        kind = "a run" if (out / "config.toml").exists() else "files"
        raise UserError(
            f"--out {out} already holds {kind}: pass --resume {out} to continue a run, "
            "--overwrite to replace it, or choose another --out"
        )
    if staging.exists() and not overwrite:
        raise UserError(
            f"{staging} holds an unfinished run: pass --resume {out} to continue it, "
            "--overwrite to start again, or choose another --out"
        )


def resume_source(out: Path) -> Path:
    """The folder a ``--resume out`` continues: the unfinished run, else the finished one."""
    staging = staging_of(out)
    if staging.is_dir():
        return staging
    if out.is_dir():
        return out
    raise UserError(f"--resume {out}: no such run folder (and no unfinished {staging.name})")


class Lock:
    """An exclusive ``flock`` on ``folder/.lock`` (POSIX; elsewhere no lock)."""

    def __init__(self, folder: Path):
        self.folder, self.fd = folder, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise UserError(
                f"{self.folder}: another lecturenn process is writing this run folder; "
                "wait for it to finish or choose another --out"
            ) from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def start(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """Make the staging folder the run writes into, and return it (the writing process only).

    A new run's staging folder starts empty (an old unfinished one is removed only with
    ``overwrite``, and only when no process holds it); a resumed finished run is moved there.
    """
    staging = staging_of(out)
    writable_parent(out)
    if resume:
        if not staging.exists():
            os.replace(out, staging)
            fsync_dir(staging.parent)
        return staging
    if staging.exists():  # overwrite: an unfinished run nobody is writing
        with Lock(staging):
            pass
        shutil.rmtree(staging)
    try:
        staging.mkdir()
    except OSError as error:
        raise UserError(f"--out {out}: cannot create {staging} ({error.strerror})") from None
    return staging


def publish(staging: Path, out: Path) -> None:
    """Rename the finished run into place; an earlier ``out`` (--overwrite, or an empty folder)
    is moved aside first and removed last, so a crash in between loses neither."""
    if out.exists():
        aside = out.with_name(out.name + ".replaced")
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(out, aside)
        os.replace(staging, out)
        fsync_dir(out.parent)
        shutil.rmtree(aside)
    else:
        os.replace(staging, out)
        fsync_dir(out.parent)


def discard_if_untrained(staging: Path) -> None:
    """After a failure: a run with no checkpoint yet leaves no folder behind."""
    checkpoints = staging / "checkpoints"
    if staging.is_dir() and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        shutil.rmtree(staging, ignore_errors=True)
