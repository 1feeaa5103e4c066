"""outbox: no index on (status, not_before)

Every query of the outbox names a campaign or a contact. Without statistics SQLite took this
index for the frequency cap's count of a batch's messages, and read every message ever sent;
it also cost two more index writes each time a message changed status.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 20:45:00
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_outbox_status_due', 'outbox')


def downgrade() -> None:
    op.create_index('ix_outbox_status_due', 'outbox', ['status', 'not_before'])
