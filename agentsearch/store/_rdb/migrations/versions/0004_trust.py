"""What a user needs to trust a run: its examples, its failures and whether it is alive.

- ``examples``: each run's examples (id, split, inputs, gold answers), so the database alone answers
  "which examples did this candidate get wrong, and what did it say".
- ``runs.unscored_lm_calls`` / ``runs.unscored_tokens``: calls spent on examples an LM outage left
  unscored (no result row keeps them, yet the budget must count them).
- ``runs.heartbeat_at`` / ``runs.owner``: when the process driving the run last said it was alive,
  and which process that is (``host:pid``); a ``running`` run whose heartbeat is old, or whose
  process on this host is gone, died without saying so.
- ``evaluations.top_error`` / ``top_error_count``: the most common error text of an evaluation.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("unscored_lm_calls", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("unscored_tokens", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime))
        batch.add_column(sa.Column("owner", sa.String(255)))
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("top_error", sa.Text))
        batch.add_column(sa.Column("top_error_count", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "examples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("example_id", sa.String(255), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("gold", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "split", "example_id"),
    )


def downgrade() -> None:
    op.drop_table("examples")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("top_error_count")
        batch.drop_column("top_error")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner")
        batch.drop_column("heartbeat_at")
        batch.drop_column("unscored_tokens")
        batch.drop_column("unscored_lm_calls")
