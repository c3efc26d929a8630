"""processed_events keyed by (store_id, event_id); index on processed_at for pruning

Event ids are unique within a store only: the inbox's primary key becomes
(store_id, event_id). Existing rows are kept (an id alone was unique, so the pair is).
`processed_at` gets an index: rows past `nats.dedupe_horizon` are pruned by it.

Revision ID: 5b1e7c2d9a40
Revises: 032bfad3798b
Create Date: 2026-12-05 01:30:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '5b1e7c2d9a40'
down_revision: Union[str, Sequence[str], None] = '032bfad3798b'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('processed_events', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint('pk_processed_events', type_='primary')
        batch_op.create_primary_key('pk_processed_events', ['store_id', 'event_id'])
        batch_op.create_index(batch_op.f('ix_processed_events_processed_at'), ['processed_at'],
                              unique=False)


def downgrade() -> None:
    # An id seen in several stores keeps one row: the old key holds an id once.
    op.execute(sa.text(
        "DELETE FROM processed_events WHERE (store_id, event_id) NOT IN "
        "(SELECT MIN(store_id), event_id FROM processed_events GROUP BY event_id)"))
    with op.batch_alter_table('processed_events', schema=None, recreate='auto') as batch_op:
        batch_op.drop_index(batch_op.f('ix_processed_events_processed_at'))
        batch_op.drop_constraint('pk_processed_events', type_='primary')
        batch_op.create_primary_key('pk_processed_events', ['event_id'])
