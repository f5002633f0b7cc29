"""Against the project's real PostgreSQL: ``otel-sqla-lineage schema --url`` names and
describes tables exactly as the running application does — the instrumentor's
emit-at-start DatasetEvents are the same datasets, facet for facet, and the run events'
datasets share their namespace, name and column types. tests/shop_models has a second
schema (``sales``) and an enum type, so the database-specific parts are exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import make_lineage
from sqlalchemy.orm import Session

from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor

pytestmark = [pytest.mark.postgres, pytest.mark.subprocess]

TESTS = Path(__file__).resolve().parent
SCRIPT = Path(sys.executable).parent / "otel-sqla-lineage"


@pytest.fixture
def shop_engine(postgres_url: str) -> Iterator[sa.engine.Engine]:
    from shop_models import catalog, sales

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS sales")
    catalog.Base.metadata.drop_all(engine)
    sales.metadata.drop_all(engine)
    catalog.Base.metadata.create_all(engine)
    sales.metadata.create_all(engine)
    try:
        yield engine
    finally:
        catalog.Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS sales CASCADE")
        engine.dispose()


def cli_datasets(postgres_url: str, cwd: Path) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENLINEAGE", "OTEL_SQLA_LINEAGE"))}
    proc = subprocess.run([str(SCRIPT), "schema", str(TESTS / "shop_models"), "--url",
                           postgres_url, "-o", "-"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    password = sa.engine.make_url(postgres_url).password
    assert password and password not in proc.stdout + proc.stderr
    return {json.loads(line)["dataset"]["name"]: json.loads(line)["dataset"]
            for line in proc.stdout.splitlines()}


def test_static_events_are_the_datasets_the_running_app_announces_and_uses(
    postgres_url: str, shop_engine: sa.engine.Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shop_models.catalog import Category, Product, Status
    from shop_models.sales import Customer, Order

    static = cli_datasets(postgres_url, tmp_path)
    assert sorted(static)[:3] == ["osl_test.public.book_details", "osl_test.public.categories",
                                  "osl_test.public.games"]
    assert static["osl_test.sales.orders"]["namespace"] == "postgres://127.0.0.1:55432"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_FILE", str(tmp_path / "at_start.jsonl"))
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE"):
        monkeypatch.delenv(name, raising=False)
    lineage = make_lineage(tmp_path)
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=lineage.traced.provider, engine=shop_engine,
                            emit_schema_at_start=True)
    try:
        with lineage.tracer.start_as_current_span("take_order"), Session(shop_engine) as s:
            games = Category(name="games")
            s.add_all([games, Product(sku="D-1", name="Dune", price=9, status=Status.active,
                                      kind="product", categories=[games])])
            customer = Customer(email="ada@example.org", vip=False)
            s.add(customer)
            s.flush()
            s.add(Order(customer_id=customer.id, total=9,
                        placed_at=sa.func.now()))
            s.commit()
            s.query(Product).join(Product.categories).all()
        runs = lineage.events()
        at_start_events = instrumentor._schema_at_start
        assert at_start_events is not None and at_start_events.flush(10.0)
    finally:
        instrumentor.uninstrument()
        lineage.traced.provider.shutdown()

    announced = {}
    for line in (tmp_path / "at_start.jsonl").read_text().splitlines():
        dataset = json.loads(line)["dataset"]
        if dataset["name"] in static:
            announced[dataset["name"]] = dataset
    assert announced == static  # same names, namespace, dataSource, schema, keys, classes

    used = {d["name"]: d for e in runs for d in e["inputs"] + e["outputs"]}
    assert {"osl_test.public.products", "osl_test.public.categories",
            "osl_test.public.product_categories", "osl_test.sales.customers",
            "osl_test.sales.orders"} <= set(used)
    for name in ("osl_test.public.products", "osl_test.sales.orders"):
        assert used[name]["namespace"] == static[name]["namespace"]
        assert used[name]["facets"]["dataSource"] == static[name]["facets"]["dataSource"]
        assert [(f["name"], f["type"]) for f in used[name]["facets"]["schema"]["fields"]] == [
            (f["name"], f["type"]) for f in static[name]["facets"]["schema"]["fields"]]
