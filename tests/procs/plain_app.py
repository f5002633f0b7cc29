"""An application with no OpenTelemetry code at all: run under opentelemetry-instrument."""

import sys

import sqlalchemy as sa

engine = sa.create_engine(f"sqlite:///{sys.argv[1]}")
with engine.begin() as conn:
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, page TEXT)"))
    conn.execute(sa.text("INSERT INTO visits (page) VALUES (:page)"), {"page": "/home"})
    pages = conn.execute(sa.text("SELECT page FROM visits")).scalars().all()
print("pages:", pages)
