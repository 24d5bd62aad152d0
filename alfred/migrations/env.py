"""Alembic environment: the URL comes from the caller (alfred.migrate) or DATABASE_URL."""

from alembic import context
from sqlalchemy import pool

from alfred.config import Settings
from alfred.db import get_engine
from alfred.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=url.startswith("sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


_ = pool  # keep the import that alembic templates expect
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
