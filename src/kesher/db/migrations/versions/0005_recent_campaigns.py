"""the last campaigns of each contact on its rollup row

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:50:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

RECENT = 20


def upgrade() -> None:
    with op.batch_alter_table('contact_rollups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent_campaigns', sa.String(length=20), nullable=True))
    _fill()


def _fill() -> None:
    """The letters of the stored receipts, newest first: b opened and clicked, o opened, c clicked, - neither."""
    bind = op.get_bind()
    after = 0
    while True:
        ids = [row[0] for row in bind.execute(sa.text(
            "SELECT DISTINCT contact_id FROM campaign_receipts WHERE contact_id > :after AND sent_at IS NOT NULL "
            "ORDER BY contact_id LIMIT 10000"), {"after": after})]
        if not ids:
            return
        rows = bind.execute(sa.text(
            "SELECT contact_id, first_open_at IS NOT NULL, first_click_at IS NOT NULL FROM ("
            " SELECT contact_id, first_open_at, first_click_at, row_number() OVER ("
            "  PARTITION BY contact_id ORDER BY sent_at DESC, campaign_id DESC) AS n"
            " FROM campaign_receipts WHERE contact_id >= :low AND contact_id <= :high AND sent_at IS NOT NULL) ranked "
            "WHERE n <= :recent ORDER BY contact_id, n"), {"low": ids[0], "high": ids[-1], "recent": RECENT})
        letters: dict[int, str] = {}
        for contact_id, opened, clicked in rows:
            letter = ("b" if clicked else "o") if opened else ("c" if clicked else "-")
            letters[contact_id] = letters.get(contact_id, "") + letter
        bind.execute(sa.text("UPDATE contact_rollups SET recent_campaigns = :recent WHERE contact_id = :cid"),
                     [{"cid": cid, "recent": value} for cid, value in letters.items()])
        after = ids[-1]


def downgrade() -> None:
    with op.batch_alter_table('contact_rollups', schema=None) as batch_op:
        batch_op.drop_column('recent_campaigns')
