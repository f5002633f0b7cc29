"""A git revision of the working tree's repository, materialized in a directory.

``schema-diff app/models.py@origin/main`` reads the models as they were at a revision:
the whole repository tree at that revision is extracted (``git archive``) into a
temporary directory, so the module imports its siblings as they were too.
"""

from __future__ import annotations

import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from otel_sqla_lineage.errors import OtelSqlaLineageError


class GitError(OtelSqlaLineageError):
    """git is missing, the directory is not in a repository, or the revision is unknown."""


@dataclass(frozen=True, slots=True)
class Target:
    """``module-or-path[@revision]``."""

    spec: str
    revision: str | None

    @classmethod
    def parse(cls, text: str) -> Target:
        spec, sep, revision = text.rpartition("@")
        if not sep:
            return cls(text, None)
        if not spec or not revision:
            raise ValueError(f"{text!r}: expected MODULE-OR-PATH@REVISION")
        return cls(spec, revision)

    def __str__(self) -> str:
        return f"{self.spec}@{self.revision}" if self.revision else self.spec


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc


def repository_root(directory: Path) -> Path:
    result = _git(["rev-parse", "--show-toplevel"], directory)
    if result.returncode != 0:
        raise GitError(f"{directory} is not inside a git repository "
                       f"({result.stderr.decode(errors='replace').strip()})")
    return Path(result.stdout.decode().strip()).resolve()


def materialize(root: Path, revision: str, into: Path) -> None:
    """Extract the tree of ``revision`` into ``into`` (an existing, empty directory)."""
    check = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{tree}}"], root)
    if check.returncode != 0:
        raise GitError(f"unknown git revision {revision!r} in {root}")
    try:
        proc = subprocess.Popen(["git", "archive", "--format=tar", revision], cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")
        else:  # Python before 3.10.12 / 3.11.4: git archive output is trusted
            archive.extractall(into)
    stderr = proc.stderr.read() if proc.stderr is not None else b""
    if proc.wait() != 0:
        raise GitError(f"git archive {revision} failed: {stderr.decode(errors='replace')}")
