"""Candidates keep a note: why a candidate failed (an agent design that would not run, with its error).

Example results keep ``program_calls``: the LM calls the program made for the example, those DSPy's
cache answered included (``lm_calls`` counts only the calls paid for), so what a program costs per
input does not depend on what ran before it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.add_column(sa.Column("note", sa.Text))
    with op.batch_alter_table("example_results") as batch:
        batch.add_column(sa.Column("program_calls", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("example_results") as batch:
        batch.drop_column("program_calls")
    with op.batch_alter_table("candidates") as batch:
        batch.drop_column("note")
