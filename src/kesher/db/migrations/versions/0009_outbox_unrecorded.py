"""outbox: an index for the messages whose event is not stored yet

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 17:35:00
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_campaign_unrecorded', 'outbox', ['campaign_id', 'recorded', 'status', 'id'])


def downgrade() -> None:
    op.drop_index('ix_outbox_campaign_unrecorded', 'outbox')
