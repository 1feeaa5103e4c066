"""events by campaign, and purchase lines by category with their order: indexes segments answer
from; workspaces.segments_stamp for the real-time path

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SOME_CAMPAIGN = sa.text("campaign_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('workspaces') as batch:
        batch.add_column(sa.Column('segments_stamp', sa.BigInteger(), nullable=False, server_default='0'))
    op.create_index('ix_events_ws_campaign_type', 'events', ['workspace_id', 'campaign_id', 'type', 'contact_id'],
                    sqlite_where=SOME_CAMPAIGN, postgresql_where=SOME_CAMPAIGN)
    op.drop_index('ix_purchase_items_ws_category_ts', 'purchase_items')
    op.create_index('ix_purchase_items_ws_category_ts', 'purchase_items',
                    ['workspace_id', 'category', 'ts', 'contact_id', 'event_id'])


def downgrade() -> None:
    op.drop_index('ix_purchase_items_ws_category_ts', 'purchase_items')
    op.create_index('ix_purchase_items_ws_category_ts', 'purchase_items', ['workspace_id', 'category', 'ts', 'contact_id'])
    op.drop_index('ix_events_ws_campaign_type', 'events')
    with op.batch_alter_table('workspaces') as batch:
        batch.drop_column('segments_stamp')
