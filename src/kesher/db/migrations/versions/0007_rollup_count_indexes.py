"""purchase and open counts indexed for segments

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 15:35:00
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_contact_rollups_ws_purchases', 'contact_rollups', ['workspace_id', 'purchase_count'])
    op.create_index('ix_contact_rollups_ws_opens', 'contact_rollups', ['workspace_id', 'open_count'])


def downgrade() -> None:
    op.drop_index('ix_contact_rollups_ws_opens', 'contact_rollups')
    op.drop_index('ix_contact_rollups_ws_purchases', 'contact_rollups')
