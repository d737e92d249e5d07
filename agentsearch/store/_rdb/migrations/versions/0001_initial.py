"""Runs, candidates, evaluations and per-example results.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("task_name", sa.String(255), nullable=False, index=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("stop_reason", sa.Text),
        sa.Column("task", sa.JSON, nullable=False),
        sa.Column("space", sa.JSON),
        sa.Column("proposer_lm_calls", sa.Integer, nullable=False),
        sa.Column("proposer_tokens", sa.Integer, nullable=False),
        sa.Column("proposer_cost_usd", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False, index=True),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("optimizer", sa.String(64), nullable=False),
        sa.Column("parents", sa.JSON, nullable=False),
        sa.Column("trial_number", sa.Integer),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.UniqueConstraint("run_id", "number"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("candidate_id", sa.Integer, sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("n_errors", sa.Integer, nullable=False),
        sa.Column("lm_calls", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("wall_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.UniqueConstraint("candidate_id", "split"),
    )
    op.create_table(
        "example_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("evaluation_id", sa.Integer, sa.ForeignKey("evaluations.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("example_id", sa.String(255), nullable=False),
        sa.Column("prediction", sa.JSON),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("lm_calls", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("evaluation_id", "example_id"),
    )


def downgrade() -> None:
    for table in ("example_results", "evaluations", "candidates", "runs"):
        op.drop_table(table)
