"""Many workers on one run: counters the store increments atomically, and leases.

- ``runs.counted_candidates``: candidates counted against ``search.max_candidates``, so a quota is
  checked and taken in one step however many workers create candidates at once.
- ``runs.reserved_lm_calls``: the LM calls workers reserved from ``budget.max_lm_calls`` before
  making them; ``runs.workers_joined``: the ordinal the next worker gets.
- ``leases``: who holds what until when: a pending candidate (``candidate:<id>``), the one-time
  work of a run (``space``, ``finish``), a worker's presence (``worker:<holder>``).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("counted_candidates", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_lm_calls", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("workers_joined", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE runs SET counted_candidates = (SELECT COUNT(*) FROM candidates c "
               "WHERE c.run_id = runs.id AND c.optimizer != 'repair')")
    op.create_table(
        "leases",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False, index=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("workers_joined")
        batch.drop_column("reserved_lm_calls")
        batch.drop_column("counted_candidates")
