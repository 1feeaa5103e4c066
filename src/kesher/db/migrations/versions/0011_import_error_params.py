"""imports and their errors keep their message's parameters, so the report can be shown in the user's language

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 10:45:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


TABLES = ('imports', 'import_errors')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'),
                                       nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('params')
