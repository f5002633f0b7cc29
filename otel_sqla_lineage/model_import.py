"""Importing the user's model code: the one place that runs it.

Importing a module runs its top-level code, with whatever side effects it has (reading
settings, creating engines — which do not connect until used — or worse). Nothing here
connects to a database; a model module that does so at import time will do it here too.

A target is a dotted module name (``app.models``, imported with the working directory
first on ``sys.path``, as ``python -m`` does), a ``.py`` file or a package directory
(imported under its dotted name from the first parent directory that is not a package, so
its relative and absolute imports work as in the application). Models are found in the
module's namespace and, for a package, in the submodules its import imported.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from otel_sqla_lineage.errors import OtelSqlaLineageError
from otel_sqla_lineage.model_tables import FoundModels, find_models


class ModelImportError(OtelSqlaLineageError):
    """The user's module could not be imported; ``str()`` is the one-paragraph message."""

    def __init__(self, target: str, exc: BaseException, hint: str) -> None:
        self.target = target
        self.original = exc
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
        super().__init__(
            f"cannot import {target!r}: {type(exc).__name__}: {detail}. {hint}"
        )


class NoTablesError(OtelSqlaLineageError):
    """The modules import, but declare no table we can find."""


_HINT = (
    "Importing runs the module's code: its dependencies must be installed in this Python "
    "environment and it must not need a running application or database at import time "
    "(--traceback shows where it failed)."
)


def module_name_for(target: str, extra_paths: Sequence[str] = ()) -> tuple[str, list[str]]:
    """(dotted module name, directories to put first on ``sys.path``) for a target."""
    path = Path(target)
    if target.endswith(".py") or path.is_dir() or "/" in target or "\\" in target:
        path = path.resolve()
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {target}")
        parts = [path.stem] if path.suffix == ".py" and path.name != "__init__.py" else []
        directory = path if path.is_dir() else path.parent
        if path.name == "__init__.py":
            parts = []
        while (directory / "__init__.py").exists():
            parts.insert(0, directory.name)
            directory = directory.parent
        if not parts:
            raise ValueError(f"{target} is neither a .py file nor a package directory")
        return ".".join(parts), [str(directory), *extra_paths]
    return target, [str(Path.cwd()), *extra_paths]


def import_models(
    targets: Sequence[str], extra_paths: Sequence[str] = (), label: str | None = None
) -> FoundModels:
    """Import each target and find the model objects its namespace holds (``label``: how
    messages name a single target, when it was rewritten, e.g. into a git revision's tree).

    Raises :class:`ModelImportError` (with the user's exception inside) when an import
    fails, :class:`NoTablesError` when nothing declares a table.
    """
    modules: list[ModuleType] = []
    for target in targets:
        try:
            name, paths = module_name_for(target, extra_paths)
        except (OSError, ValueError) as exc:
            raise ModelImportError(label or target, exc, "Give a dotted module name, a .py "
                                   "file or a package directory.") from exc
        for entry in reversed(paths):
            resolved = str(Path(entry).resolve())
            if resolved not in sys.path:
                sys.path.insert(0, resolved)
        try:
            modules.append(importlib.import_module(name))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt of user code too
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ModelImportError(label or target, exc, _HINT) from exc
    objects: list[object] = []
    for module in modules:
        objects.extend(vars(module).values())
        # a package: the submodules its import imported (never imports more of them:
        # a package may hold migrations or scripts that must not run)
        prefix = module.__name__ + "."
        for name, submodule in list(sys.modules.items()):
            if name.startswith(prefix) and submodule is not None:
                objects.extend(vars(submodule).values())
    found = find_models(objects)
    if not found.tables():
        raise NoTablesError(
            f"no SQLAlchemy tables found in {label or ', '.join(targets)}: the module(s) "
            "imported, but none of their top-level names is a declarative base, mapped "
            "class, registry, MetaData or Table. Name the module that defines (or imports) "
            "your models; a package counts the submodules its __init__ imports."
        )
    return found
