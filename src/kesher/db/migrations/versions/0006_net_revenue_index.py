"""revenue less refunds, indexed for segments

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 15:15:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_contact_rollups_ws_net_revenue', 'contact_rollups',
                    ['workspace_id', sa.text('(revenue_minor - refunds_minor)')])


def downgrade() -> None:
    op.drop_index('ix_contact_rollups_ws_net_revenue', 'contact_rollups')
