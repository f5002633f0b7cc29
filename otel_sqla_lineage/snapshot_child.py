"""``python -m otel_sqla_lineage.snapshot_child``: import model code, write its snapshot.

``schema-diff`` runs this once per side, so two versions of one module never share a
process (``sys.modules`` would hand back the first) and the side effects of importing
user code stay in a process that ends. The snapshot goes to a file, not stdout, which
the user's code may print to.

Exit codes: 0 written, 2 import failed or no tables (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from otel_sqla_lineage.errors import OtelSqlaLineageError
from otel_sqla_lineage.model_import import ModelImportError, import_models
from otel_sqla_lineage.model_tables import snapshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_sqla_lineage.snapshot_child")
    parser.add_argument("target")
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", default=None, help="what to call the target in reports")
    parser.add_argument("--dialect-url", default=None)
    parser.add_argument("--app-dir", action="append", default=[])
    parser.add_argument("--expect-under", default=None,
                        help="fail unless the module was imported from under this directory")
    parser.add_argument("--traceback", action="store_true")
    args = parser.parse_args(argv)
    try:
        found = import_models([args.target], args.app_dir, args.source)
        if args.expect_under:
            _check_origin(args.target, args.expect_under, args.source or args.target)
        dialect = None
        if args.dialect_url:
            from otel_sqla_lineage.cli import dialect_for

            dialect = dialect_for(args.dialect_url)
        snap = snapshot(found, dialect, args.source or args.target)
    except OtelSqlaLineageError as exc:
        if args.traceback and isinstance(exc, ModelImportError):
            sys.stderr.write(exc.traceback)
        sys.stderr.write(f"otel-sqla-lineage schema-diff: error: {exc}\n")
        return 2
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(snap.to_dict(), out)
    return 0


def _check_origin(target: str, directory: str, label: str) -> None:
    """A dotted name may resolve to an installed copy (an editable install of the
    working tree) instead of the revision's tree: that would compare a tree with itself."""
    import importlib
    from pathlib import Path

    from otel_sqla_lineage.model_import import module_name_for

    name, _ = module_name_for(target)
    module = importlib.import_module(name)
    origin = getattr(module, "__file__", None)
    if origin and not Path(origin).resolve().is_relative_to(Path(directory).resolve()):
        raise OtelSqlaLineageError(
            f"{label!r} was imported from {origin}, not from the "
            f"revision's tree: give it as a path (e.g. src/app/models.py@REV) or add its "
            "source root with --app-dir"
        )


if __name__ == "__main__":
    sys.exit(main())
