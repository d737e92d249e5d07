"""Alembic environment: runs on the connection RDBStorage hands over, with agentsearch's own version table."""

from __future__ import annotations

from alembic import context

from agentsearch.store._rdb.models import Base
from agentsearch.store._rdb.storage import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
