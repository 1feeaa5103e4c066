"""events: the index on anonymous_id holds only the events of anonymous visitors

Events named by a contact (all those of the API, the stores and the campaigns) have no anonymous
id, yet each got an entry under NULL in this index, written at ingest and never read: every query
of it names an anonymous id (`anonymous_id = ...`), which both databases see implies NOT NULL.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

VISITORS = sa.text('anonymous_id IS NOT NULL')


def upgrade() -> None:
    op.drop_index('ix_events_ws_anonymous', 'events')
    op.create_index('ix_events_ws_anonymous', 'events', ['workspace_id', 'anonymous_id'],
                    sqlite_where=VISITORS, postgresql_where=VISITORS)


def downgrade() -> None:
    op.drop_index('ix_events_ws_anonymous', 'events')
    op.create_index('ix_events_ws_anonymous', 'events', ['workspace_id', 'anonymous_id'])
