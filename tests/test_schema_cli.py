"""``otel-sqla-lineage schema`` and ``schema-diff``, run as a user runs them: the installed
console script, in a child process, on the demo's models and on tests/shop_models (two
registries, joined and single-table inheritance, association tables, a schema).

Expected names, types and keys are written out by hand from the model files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from olspec import validate_event
from openlineage.client.serde import Serde

from otel_sqla_lineage.events import to_json, to_openlineage_event

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SCRIPT = Path(sys.executable).parent / "otel-sqla-lineage"
DEMO_MODELS = ROOT / "otel_sqla_lineage" / "demo" / "models.py"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    if not SCRIPT.exists():
        pytest.fail(f"the console script is not installed at {SCRIPT}: run "
                    "scripts/bootstrap.sh", pytrace=False)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OPENLINEAGE", "OTEL_SQLA_LINEAGE"))}
    clean["HOME"] = str(cwd)  # no ~/.openlineage/openlineage.yml of the machine
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**clean, **(env or {})})


def events_of(text: str) -> dict[str, dict[str, Any]]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {e["dataset"]["name"]: e for e in events}


def fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["name"], f["type"]) for f in event["dataset"]["facets"]["schema"]["fields"]]


def assert_valid(event: dict[str, Any]) -> None:
    validate_event(event)
    assert Serde.to_json(to_openlineage_event(event)) == to_json(event)


# -- schema --------------------------------------------------------------------------------


def test_schema_of_the_demo_models_names_datasets_as_the_runtime_does(tmp_path: Path) -> None:
    proc = run("schema", "otel_sqla_lineage.demo.models",
               "--url", "postgresql://library:s3cret@db.internal:5432/library",
               "--output", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert sorted(events) == ["library.public.book_history", "library.public.books",
                              "library.public.posts", "library.public.users"]
    books = events["library.public.books"]
    assert books["dataset"]["namespace"] == "postgres://db.internal:5432"
    assert books["schemaURL"].endswith("/2-0-2/OpenLineage.json#/$defs/DatasetEvent")
    assert "run" not in books and "job" not in books
    assert books["dataset"]["facets"]["dataSource"]["uri"] == (
        "postgres://db.internal:5432/library")
    assert fields(books) == [("id", "INTEGER"), ("title", "VARCHAR(200)"),
                             ("author", "VARCHAR(120)"), ("copies_available", "INTEGER")]
    history = events["library.public.book_history"]["dataset"]["facets"]["sqlalchemyTable"]
    assert history["primaryKey"] == ["id"]
    assert {c["name"]: c["nullable"] for c in history["columns"]} == {
        "id": False, "book_id": False, "user_id": False, "checked_out": False,
        "returned": True}
    assert sorted((f["columns"][0], f["referredTable"]) for f in history["foreignKeys"]) == [
        ("book_id", "books"), ("user_id", "users")]
    assert history["mappedClasses"] == ["otel_sqla_lineage.demo.models.BookHistory"]
    for event in events.values():
        assert_valid(event)
    assert "s3cret" not in proc.stdout + proc.stderr
    assert "4 DatasetEvent(s) in namespace postgres://db.internal:5432" in proc.stderr


def test_schema_of_a_larger_model_set_covers_inheritance_and_association_tables(
    tmp_path: Path,
) -> None:
    proc = run("schema", str(TESTS / "shop_models"), "--url", "postgresql://pg:5432/shop",
               "--output", str(tmp_path / "events.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of((tmp_path / "events.jsonl").read_text())
    assert sorted(events) == [
        "shop.public.book_details", "shop.public.categories", "shop.public.games",
        "shop.public.product_categories", "shop.public.products",
        "shop.sales.audit_log", "shop.sales.customers", "shop.sales.order_lines",
        "shop.sales.orders", "shop.sales.payments",
    ]

    def table_facet(name: str) -> dict[str, Any]:
        return dict(events[name]["dataset"]["facets"]["sqlalchemyTable"])

    assert table_facet("shop.public.book_details")["mappedClasses"] == [
        "shop_models.catalog.BookProduct"]
    assert table_facet("shop.public.book_details")["foreignKeys"] == [
        {"columns": ["id"], "referredColumns": ["id"], "referredTable": "products"}]
    assert table_facet("shop.sales.payments")["mappedClasses"] == [
        "shop_models.sales.CardPayment", "shop_models.sales.InvoicePayment",
        "shop_models.sales.Payment"]
    assert table_facet("shop.public.product_categories")["mappedClasses"] == []
    assert table_facet("shop.public.product_categories")["primaryKey"] == [
        "product_id", "category_id"]
    assert table_facet("shop.sales.audit_log")["tableSchema"] == "sales"
    assert table_facet("shop.sales.order_lines")["primaryKey"] == ["order_id", "product_id"]
    products = events["shop.public.products"]["dataset"]["facets"]["schema"]["fields"]
    by_name = {f["name"]: f for f in products}
    assert by_name["price"]["type"] == "NUMERIC(10, 2)"
    assert by_name["price"]["description"] == "unit price in EUR"
    assert by_name["sku"]["description"] == "stock keeping unit"
    assert "description" not in by_name["name"]
    assert fields(events["shop.sales.audit_log"]) == [
        ("id", "BIGINT"), ("at", "TIMESTAMP WITH TIME ZONE"), ("entry", "TEXT")]
    for event in events.values():
        assert_valid(event)


def test_schema_with_a_namespace_only_names_tables_by_schema_and_name(tmp_path: Path) -> None:
    proc = run("schema", str(TESTS / "shop_models"), "--namespace", "warehouse://models",
               "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert "sales.orders" in events and "products" in events
    assert {e["dataset"]["namespace"] for e in events.values()} == {"warehouse://models"}
    # no dialect given: SQLAlchemy's own type names
    assert ("at", "DATETIME") in fields(events["sales.audit_log"])


def test_schema_goes_where_the_runtime_sends_events(tmp_path: Path) -> None:
    """No --output: the openlineage.yml transport (openlineage-python's file transport),
    the same resolution the exporter uses."""
    out = tmp_path / "from-transport.jsonl"
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {out}\n  append: true\n")
    proc = run("schema", str(DEMO_MODELS), "--url", "sqlite:////srv/library.db",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(out.read_text())
    assert sorted(events) == ["book_history", "books", "posts", "users"]
    assert {e["dataset"]["namespace"] for e in events.values()} == {
        f"sqlite://{os.uname().nodename}/srv/library.db"}
    assert "4 of 4 DatasetEvent(s)" in proc.stderr and "file transport" in proc.stderr


def test_schema_with_no_transport_configured_writes_the_default_file(tmp_path: Path) -> None:
    proc = run("schema", "otel_sqla_lineage.demo.models", "--namespace", "ns", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(events_of((tmp_path / "openlineage_events.jsonl").read_text())) == 4


def test_a_failing_import_gives_one_clear_paragraph_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken_models.py").write_text(
        "import sqlalchemy\nraise RuntimeError('DATABASE_URL is not set')\n")
    proc = run("schema", "broken_models", "--namespace", "ns", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    message = proc.stderr.strip()
    assert "Traceback" not in message
    assert "cannot import 'broken_models': RuntimeError: DATABASE_URL is not set." in message
    assert "Importing runs the module's code" in message
    assert len(message.splitlines()) == 1
    with_traceback = run("schema", "broken_models", "--namespace", "ns", "--traceback",
                         cwd=tmp_path)
    assert with_traceback.returncode == 2
    assert "Traceback" in with_traceback.stderr and "broken_models.py" in with_traceback.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["schema", "no_such_module_here", "--namespace", "ns"],
     "ModuleNotFoundError: No module named 'no_such_module_here'"),
    (["schema", "json", "--namespace", "ns"], "no SQLAlchemy tables found in json"),
    (["schema", "otel_sqla_lineage.demo.models"], "give --url"),
    (["schema", "otel_sqla_lineage.demo.models", "--url", "nosuchdb://h/x"],
     "no SQLAlchemy dialect for nosuchdb://h/x"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path: Path, args: list[str],
                                            expected: str) -> None:
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


# -- schema-diff -------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})


def edit(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    """A git repository whose package ``app`` holds the demo's models; HEAD~1 is the demo
    as it is, HEAD changes it (the pull request)."""
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "__init__.py").write_text("")
    shutil.copy(DEMO_MODELS, repo / "app" / "models.py")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "models")
    edit(repo / "app" / "models.py",
         ("title = Column(String(200), nullable=False)",
          "title = Column(String(50), nullable=False)"),
         ("    returned = Column(Date)\n", ""),
         ("    body = Column(Text, nullable=False)", "    content = Column(Text, nullable=False)"),
         ('book_id = Column(Integer, ForeignKey("books.id"))\n',
          'book_id = Column(Integer, ForeignKey("books.id"), nullable=False)\n'),
         ("    email = Column(String(120), nullable=False, unique=True)\n",
          "    email = Column(String(120), nullable=False, unique=True)\n"
          "    nickname = Column(String(40))\n"))
    git(repo, "commit", "-qam", "change the models")
    return repo


def test_diff_across_two_git_revisions_exits_1_naming_each_breaking_change(
    app_repo: Path,
) -> None:
    proc = run("schema-diff", "app/models.py@HEAD~1", "app/models.py@HEAD", cwd=app_repo)
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    assert text.startswith("schema-diff app/models.py@HEAD~1 -> app/models.py@HEAD: "
                           "4 breaking changes, 1 other change\n")
    breaking, other = text.split("\nBREAKING\n")[1].split("\nOTHER\n")
    assert breaking.split("\n") == [
        "  book_history.returned dropped (was DATE)",
        "  books.title type narrowed (shorter): VARCHAR(200) -> VARCHAR(50)",
        "  posts.body probably renamed to content (TEXT); consumers of body lose it",
        "  posts.book_id made NOT NULL (was nullable): rows without it are rejected",
        "",
    ]
    assert other.strip() == "users.nickname added (VARCHAR(40))"


def test_diff_of_a_dotted_module_at_a_revision_against_the_working_tree(
    app_repo: Path,
) -> None:
    """NEW omitted: the same module in the working tree (uncommitted edits included)."""
    edit(app_repo / "app" / "models.py", ("nickname = Column(String(40))",
                                          "nickname = Column(String(40), nullable=False)"))
    proc = run("schema-diff", "app.models@HEAD", "--format", "json", cwd=app_repo)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["old"], report["new"], report["breaking"]) == (
        "app.models@HEAD", "app.models", 1)
    assert [(c["kind"], c["table"], c["column"]) for c in report["changes"]] == [
        ("became_not_null", "users", "nickname")]


def test_diff_flags_an_added_not_null_column_unless_it_has_a_default(
    app_repo: Path,
) -> None:
    """Whether a column has a default travels from each side's child process (JSON)."""
    edit(app_repo / "app" / "models.py", (
        "    nickname = Column(String(40))\n",
        "    nickname = Column(String(40))\n"
        "    tenant = Column(Integer, nullable=False)\n"
        '    plan = Column(String(10), nullable=False, server_default="free")\n'))
    proc = run("schema-diff", "app.models@HEAD", "--format", "json", cwd=app_repo)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [(c["severity"], c["kind"], c["table"], c["column"]) for c in report["changes"]] == [
        ("breaking", "required_column_added", "users", "tenant"),
        ("info", "column_added", "users", "plan"),
    ]


def test_diff_json_and_markdown_say_what_a_reviewer_reads(app_repo: Path) -> None:
    proc = run("schema-diff", "app.models@HEAD~1", "app.models@HEAD", "-f", "json",
               cwd=app_repo)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["breaking"] == 4
    assert [(c["severity"], c["kind"], c["table"], c["column"], c["old"], c["new"])
            for c in report["changes"]] == [
        ("breaking", "column_dropped", "book_history", "returned", "DATE", None),
        ("breaking", "type_narrowed", "books", "title", "VARCHAR(200)", "VARCHAR(50)"),
        ("breaking", "column_renamed", "posts", "body", "body", "content"),
        ("breaking", "became_not_null", "posts", "book_id", "NULL", "NOT NULL"),
        ("info", "column_added", "users", "nickname", None, "VARCHAR(40)"),
    ]
    md_file = app_repo.parent / "comment.md"
    proc = run("schema-diff", "app.models@HEAD~1", "app.models@HEAD", "-f", "markdown",
               "-o", str(md_file), cwd=app_repo)
    assert proc.returncode == 1, proc.stderr
    markdown = md_file.read_text()
    assert markdown.splitlines()[0] == (
        "### :warning: Schema changes: 4 breaking changes, 1 other change")
    assert ("| **breaking** | `books` | `title` | type narrowed | `VARCHAR(200)` | "
            "`VARCHAR(50)` |") in markdown
    assert "| **breaking** | `posts` | `body` | column probably renamed | `body` | `content` |" \
        in markdown
    assert "| info | `users` | `nickname` | column added |  | `VARCHAR(40)` |" in markdown


def test_diff_with_no_change_exits_0(tmp_path: Path) -> None:
    shutil.copy(DEMO_MODELS, tmp_path / "same_models.py")
    proc = run("schema-diff", str(DEMO_MODELS), "same_models.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ": 0 breaking changes, 0 other changes" in proc.stdout


def test_diff_of_the_larger_model_set_finds_narrowing_and_dropped_tables(
    tmp_path: Path,
) -> None:
    new = tmp_path / "new" / "shop_models"
    shutil.copytree(TESTS / "shop_models", new,
                    ignore=shutil.ignore_patterns("__pycache__"))
    edit(new / "catalog.py",
         ('price = Column(Numeric(10, 2), nullable=False, comment="unit price in EUR")',
          'price = Column(Numeric(8, 2), nullable=False, comment="unit price in EUR")'),
         ('    retired = "retired"\n', ""),
         ('class Game(Product):\n    __tablename__ = "games"',
          'class Game(Product):\n    __tablename__ = "board_games"'))
    edit(new / "sales.py",
         ('    id = Column(BigInteger, primary_key=True)\n    customer_id',
          '    id = Column(Integer, primary_key=True)\n    customer_id'),
         ('display_name = Column(String(100))', 'display_name = Column(String(200))'))
    proc = run("schema-diff", str(TESTS / "shop_models"), str(new), "--url",
               "postgresql://pg/shop", "-f", "json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    changes = {(c["kind"], c["table"], c["column"]): c
               for c in json.loads(proc.stdout)["changes"]}
    assert changes[("type_narrowed", "products", "price")]["new"] == "NUMERIC(8, 2)"
    assert changes[("type_narrowed", "sales.orders", "id")]["old"] == "BIGINT"
    assert "retired" in changes[("type_narrowed", "products", "status")]["message"]
    assert changes[("table_renamed", "games", None)]["new"] == "board_games"
    assert changes[("type_widened", "sales.customers", "display_name")]["severity"] == "info"
    assert sum(c["severity"] == "breaking" for c in changes.values()) == 4


def test_diff_reports_a_side_that_cannot_be_imported_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('needs the app settings')\n")
    proc = run("schema-diff", str(DEMO_MODELS), "broken.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot import 'broken.py': ImportError: needs the app settings." in proc.stderr
    assert "could not read the models of broken.py" in proc.stderr
    assert proc.stdout == ""


def test_diff_of_an_unknown_revision_exits_2(app_repo: Path) -> None:
    proc = run("schema-diff", "app/models.py@no-such-branch", cwd=app_repo)
    assert proc.returncode == 2
    assert "unknown git revision 'no-such-branch'" in proc.stderr


def test_help_lists_both_commands_and_the_exit_codes(tmp_path: Path) -> None:
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "schema-diff" in proc.stdout and "breaking changes found" in proc.stdout


def test_events_the_transport_refuses_give_exit_1(tmp_path: Path) -> None:
    """Nothing listens on the discard port: every event fails, and the exit code says so."""
    proc = run("schema", "otel_sqla_lineage.demo.models", "--namespace", "ns", cwd=tmp_path,
               env={"OPENLINEAGE__TRANSPORT__TYPE": "http",
                    "OPENLINEAGE__TRANSPORT__URL": "http://127.0.0.1:9",
                    "OPENLINEAGE__TRANSPORT__RETRY": '{"total": 0}'})
    assert proc.returncode == 1
    assert "0 of 4 DatasetEvent(s) in namespace ns delivered to http transport" in proc.stderr


def test_the_console_script_is_registered() -> None:
    import importlib.metadata

    scripts = importlib.metadata.entry_points().select(group="console_scripts")
    assert {e.name: e.value for e in scripts}["otel-sqla-lineage"] == (
        "otel_sqla_lineage.cli:main")


def test_what_the_models_print_at_import_stays_out_of_the_events(tmp_path: Path) -> None:
    (tmp_path / "chatty_models.py").write_text(
        "print('connecting to nothing, just saying hello')\n"
        "from otel_sqla_lineage.demo.models import Base\n")
    proc = run("schema", "chatty_models", "--namespace", "ns", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(events_of(proc.stdout)) == 4
    assert "just saying hello" in proc.stderr
