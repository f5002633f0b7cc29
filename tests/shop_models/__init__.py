"""A second, larger model set for the static schema tools (``otel-sqla-lineage schema`` /
``schema-diff``), imported as the package directory ``tests/shop_models``. Two registries
in two modules, written so it maps on SQLAlchemy 1.4, 2.0 and 2.1.

Tables (expected values in tests/test_schema_cli.py are derived from this by hand):

=====================  ==========================================  ===========================
table                  mapped by                                   notes
=====================  ==========================================  ===========================
products               Product                                     joined-table inheritance root
book_details           BookProduct (a Product)                     joined-table child
games                  Game (a Product)                            joined-table child
categories             Category
product_categories     (none: association table)                   products <-> categories
sales.customers        Customer                                    schema ``sales``
sales.orders           Order
sales.order_lines      OrderLine                                   association object
sales.payments         Payment, CardPayment, InvoicePayment        single-table inheritance
sales.audit_log        (none: plain Table in the MetaData)         Core only
=====================  ==========================================  ===========================
"""

from shop_models import catalog, sales

__all__ = ["catalog", "sales"]
