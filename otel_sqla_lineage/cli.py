"""``otel-sqla-lineage``: lineage from model code, with no database and no running app.

``schema``       one OpenLineage DatasetEvent per table the models declare, sent where the
                 runtime sends its events (or to ``--output``).
``schema-diff``  what changed between two versions of the models, and whether it breaks
                 consumers; exit code 1 when it does (for CI).

Both import the user's module, which runs its top-level code (see
:mod:`otel_sqla_lineage.model_import`); ``schema-diff`` does so in a child process per side.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from otel_sqla_lineage.errors import ConfigError, OtelSqlaLineageError
from otel_sqla_lineage.naming import DatabaseLocation, location_from_url

EXIT_OK: Final = 0
EXIT_BREAKING: Final = 1  # schema-diff: breaking changes; schema: events not delivered
EXIT_ERROR: Final = 2  # usage, import, git or configuration error

_log = logging.getLogger("otel_sqla_lineage.cli")

_EPILOG = """\
exit codes:
  0  schema: every event delivered; schema-diff: no breaking change
  1  schema: some events could not be delivered; schema-diff: breaking changes found
  2  usage error, the models could not be imported, no tables found, git error

Importing a module runs its code (as the application would when it starts); no database
connection is made by this tool. Run it where the application's dependencies are installed.
"""

_SCHEMA_EPILOG = """\
examples:
  otel-sqla-lineage schema app.models --url postgresql://db.internal:5432/shop
  otel-sqla-lineage schema src/app/models.py --namespace sqlite://app-host/srv/app.db --output -

Dataset names are those the runtime gives the same tables: with --url, per the OpenLineage
naming spec (postgres://host:port + database.schema.table ...); the URL is only parsed
(leave the password out; it is never printed or emitted). With --namespace alone, names
are [schema.]table. Events go where the runtime sends them (openlineage.yml,
OPENLINEAGE_URL, OPENLINEAGE__TRANSPORT__*; with none, ./openlineage_events.jsonl) unless
--output is given.
"""

_DIFF_EPILOG = """\
examples:
  otel-sqla-lineage schema-diff app/models.py@origin/main          # revision vs working tree
  otel-sqla-lineage schema-diff app.models@v1.2 app.models@HEAD --format markdown
  otel-sqla-lineage schema-diff old_models.py new_models.py --format json

OLD and NEW are MODULE-OR-PATH[@GIT-REVISION]; NEW defaults to OLD's module in the working
tree. A revision is extracted (git archive) to a temporary directory and each side is
imported in its own Python process. Breaking: dropped tables/columns, probable renames,
narrowed types, nullable -> NOT NULL, primary key changes; other changes are listed too.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-sqla-lineage",
        description="OpenLineage metadata from SQLAlchemy model code, without a database.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    schema = sub.add_parser(
        "schema", help="emit a DatasetEvent (schema, dataSource) for every mapped table",
        description="Emit one OpenLineage DatasetEvent per table the models declare.",
        epilog=_SCHEMA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument("targets", nargs="+", metavar="MODULE-OR-PATH",
                        help="dotted module name, .py file or package directory")
    _add_naming(schema)
    schema.add_argument("--output", "-o", metavar="FILE",
                        help="write the events as JSON lines to FILE ('-': stdout) instead "
                             "of the configured OpenLineage transport")
    _add_common(schema)

    diff = sub.add_parser(
        "schema-diff", help="report schema changes between two versions of the models",
        description="Compare two versions of the models; exit 1 on breaking changes.",
        epilog=_DIFF_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("old", metavar="OLD", help="MODULE-OR-PATH[@GIT-REVISION]")
    diff.add_argument("new", metavar="NEW", nargs="?",
                      help="MODULE-OR-PATH[@GIT-REVISION] (default: OLD in the working tree)")
    diff.add_argument("--format", "-f", choices=("text", "json", "markdown"), default="text",
                      help="report format (markdown fits a pull-request comment)")
    diff.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    diff.add_argument("--url", help="render types as this database's dialect does "
                                    "(only the driver name is used)")
    diff.add_argument("--timeout", type=float, default=300.0,
                      help="seconds one side may take to import (default: 300)")
    _add_common(diff)
    return parser


def _add_naming(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the database URL the application uses: dataset "
                                      "namespace, names and SQL types follow it")
    parser.add_argument("--namespace", help="dataset namespace (overrides the one --url gives)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-dir", action="append", default=[], metavar="DIR",
                        help="also import from DIR (e.g. src); may be repeated")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback when importing the models fails")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "schema":
            return _schema(args)
        return _schema_diff(args)
    except OtelSqlaLineageError as exc:
        from otel_sqla_lineage.model_import import ModelImportError

        if args.traceback and isinstance(exc, ModelImportError):
            sys.stderr.write(exc.traceback)
        print(f"otel-sqla-lineage {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


# -- schema ----------------------------------------------------------------------------


def dialect_for(url: str) -> Any:
    """The SQLAlchemy dialect of a URL (or bare driver name), without its DBAPI driver."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        return make_url(url if "://" in url else f"{url}://").get_dialect()()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"no SQLAlchemy dialect for {_safe_url(url)}: {exc}") from exc


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "the given URL"


def location_for(url: str | None, namespace: str | None) -> DatabaseLocation:
    if url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            location = location_from_url(make_url(url))
        except ArgumentError as exc:
            raise ConfigError(f"--url {_safe_url(url)}: {exc}") from exc
        if namespace:
            return DatabaseLocation(location.scheme, location.host, location.port,
                                    location.database, location.default_schema, namespace)
        return location
    if namespace:
        # no database to name: datasets are [schema.]table in that namespace
        return DatabaseLocation("static", None, None, None, None, namespace)
    raise ConfigError("give --url (the application's database URL) or --namespace")


def _schema(args: argparse.Namespace) -> int:
    from otel_sqla_lineage.dataset_events import dataset_events
    from otel_sqla_lineage.model_import import import_models
    from otel_sqla_lineage.model_tables import snapshot

    location = location_for(args.url, args.namespace)  # before importing: fail fast
    dialect = dialect_for(args.url) if args.url else None
    # the user's code may print: keep stdout for the events (--output -)
    with contextlib.redirect_stdout(sys.stderr):
        found = import_models(args.targets, args.app_dir)
    events = dataset_events(snapshot(found, dialect, " ".join(args.targets)), location,
                            time.time_ns())
    if args.output:
        _write_json_lines(events, args.output)
        where = "stdout" if args.output == "-" else args.output
        _log.info("otel-sqla-lineage schema: %d DatasetEvent(s) in namespace %s written to %s",
                  len(events), location.namespace, where)
        return EXIT_OK
    return _deliver(events, location.namespace)


def _write_json_lines(events: list[dict[str, Any]], output: str) -> None:
    from otel_sqla_lineage.events import to_json

    def write(stream: TextIO) -> None:
        for event in events:
            stream.write(to_json(event) + "\n")

    if output == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    try:
        with open(output, "w", encoding="utf-8") as stream:
            write(stream)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc}") from exc


def _deliver(events: list[dict[str, Any]], namespace: str) -> int:
    from otel_sqla_lineage.delivery import DeliveryQueue, sink_from_environment
    from otel_sqla_lineage.settings import LineageSettings

    settings = LineageSettings.from_env()
    sink = sink_from_environment(settings)
    queue = DeliveryQueue(sink, max(settings.queue_max_events, len(events)))
    queue.put_many(events)
    queue.close(timeout=120.0)
    delivered = queue.delivered
    _log.info("otel-sqla-lineage schema: %d of %d DatasetEvent(s) in namespace %s delivered "
              "to %s", delivered, len(events), namespace, sink.description)
    return EXIT_OK if delivered == len(events) else EXIT_BREAKING


# -- schema-diff -------------------------------------------------------------------------


def _schema_diff(args: argparse.Namespace) -> int:
    from otel_sqla_lineage.gitrev import Target
    from otel_sqla_lineage.schema_diff import diff, render

    try:
        old = Target.parse(args.old)
        new = Target.parse(args.new) if args.new else Target(old.spec, None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if old == new:
        raise ConfigError(f"OLD and NEW are the same ({old}): give NEW, or OLD@REVISION")
    driver = None
    if args.url:
        driver = dialect_for(args.url).name  # only the driver name crosses to the children
    with tempfile.TemporaryDirectory(prefix="otel-sqla-lineage-") as tmp:
        old_snap = _snapshot_side(old, Path(tmp) / "old", driver, args)
        new_snap = _snapshot_side(new, Path(tmp) / "new", driver, args)
    result = diff(old_snap, new_snap)
    report = render(result, args.format)
    if args.output:
        try:
            Path(args.output).write_text(report, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc}") from exc
        _log.info("otel-sqla-lineage schema-diff: %d breaking, %d other change(s); report in %s",
                  len(result.breaking), len(result.info), args.output)
    else:
        sys.stdout.write(report)
    return EXIT_BREAKING if result.breaking else EXIT_OK


def _snapshot_side(target: Any, workdir: Path, driver: str | None,
                   args: argparse.Namespace) -> Any:
    import json

    from otel_sqla_lineage.gitrev import materialize, repository_root
    from otel_sqla_lineage.model_tables import ModelSnapshot

    workdir.mkdir()
    cwd = Path.cwd()
    spec: str = target.spec
    child_cwd = cwd
    app_dirs = [str(Path(d).resolve()) for d in args.app_dir]
    expect_under = None
    if target.revision:
        root = repository_root(cwd)
        tree = workdir / "tree"
        tree.mkdir()
        materialize(root, target.revision, tree)
        child_cwd = tree / cwd.resolve().relative_to(root)
        child_cwd.mkdir(parents=True, exist_ok=True)
        if _is_path(spec):
            moved = tree / _inside(Path(spec).resolve(), root)
            if not moved.exists():
                raise ConfigError(f"{spec} does not exist at revision {target.revision}")
            spec = str(moved)
        app_dirs = [str(tree / _inside(Path(d), root)) for d in app_dirs]
        expect_under = str(tree)
    elif _is_path(spec):
        spec = str(Path(spec).resolve())
    out = workdir / "snapshot.json"
    command = [sys.executable, "-c", _CHILD, spec, "--out", str(out), "--source", str(target)]
    if driver:
        command += ["--dialect-url", driver]
    for d in app_dirs:
        command += ["--app-dir", d]
    if expect_under:
        command += ["--expect-under", expect_under]
    if args.traceback:
        command.append("--traceback")
    try:
        # the user's code may print: none of it goes to our stdout, which holds the report
        result = subprocess.run(command, cwd=child_cwd, capture_output=True, text=True,
                                check=False, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"importing {target} took more than {args.timeout:g} s; does it "
                          "connect to something at import time?") from exc
    sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise ConfigError(f"could not read the models of {target}")
    return ModelSnapshot.from_dict(json.loads(out.read_text(encoding="utf-8")))


# The child must import our package before the user's tree is on sys.path (a revision of
# this very repository holds an older copy of it): drop the working directory -c puts first.
_CHILD: Final = (
    "import sys; sys.path.pop(0); "
    "from otel_sqla_lineage.snapshot_child import main; sys.exit(main(sys.argv[1:]))"
)


def _inside(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        raise ConfigError(f"{path} is outside the git repository {root}") from None


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or Path(spec).is_dir()


if __name__ == "__main__":
    sys.exit(main())
