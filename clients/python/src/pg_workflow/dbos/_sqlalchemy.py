"""@DBOS.transaction and SQLAlchemyDatasource on the step's own connection: the SQLAlchemy
session runs in the transaction that also records the step's checkpoint, so the body's writes
and its checkpoint commit together (exactly once). sqlalchemy is imported only here, lazily:
it is the optional extra pg-workflow[dbos]."""
import contextvars
import functools
import threading
from typing import Any, Callable, Optional

from . import _errors, _registry

_session: contextvars.ContextVar[Any] = contextvars.ContextVar("pgwf_dbos_session", default=None)
_lent = threading.local()  # the connection the engine's creator hands out, per thread
_engine: Any = None


class _Borrowed:
    """The step's psycopg connection lent to SQLAlchemy. The SDK owns its transaction and its
    life, so SQLAlchemy's commit, rollback and close (checkin) do nothing to it."""

    def __init__(self, conn: Any) -> None:
        object.__setattr__(self, "_conn", conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        try:
            import sqlalchemy as sa
            from sqlalchemy.pool import NullPool
        except ImportError:
            raise _errors.DBOSException("transactions need SQLAlchemy: pip install 'pg-workflow[dbos]'") from None
        # NullPool: every checkout asks the creator, which lends this thread's step connection.
        # No native hstore: its lookup wants the real psycopg class, not the borrowed proxy.
        _engine = sa.create_engine("postgresql+psycopg://", creator=lambda: _Borrowed(_lent.conn),
                                   poolclass=NullPool, use_native_hstore=False)
    return _engine


def current_session() -> Any:
    s = _session.get()
    if s is None:
        raise _errors.DBOSException("sql_session is only available inside a @DBOS.transaction")
    return s


def transaction_body(reg: _registry.Registration, dbos: Any) -> Callable[..., Any]:
    """What app.transaction() wraps: fn(conn, ...) opens a Session on conn around the user's
    function. Its commit only flushes (the SDK commits with the checkpoint)."""
    from sqlalchemy.orm import Session
    engine = _get_engine()

    @functools.wraps(reg.fn)
    def body(conn: Any, *args: Any, **kwargs: Any) -> Any:
        previous = getattr(_lent, "conn", None)
        _lent.conn = conn
        session = Session(engine)
        token = _session.set(session)
        try:
            value = reg.fn(*args, **kwargs)
            session.commit()
            return value
        finally:
            _session.reset(token)
            session.close()
            _lent.conn = previous

    body.__qualname__ = reg.name
    return body


class SQLAlchemyDatasource:
    """DBOS 3.x datasource. Its transactions run on the DBOS system database connection, so the
    URL must name that same database (pg_workflow keeps checkpoints in it)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    @staticmethod
    def create(database_url: str, engine_kwargs: Optional[dict] = None, engine: Any = None,
               schema: Optional[str] = None, **_ignored: Any) -> "SQLAlchemyDatasource":
        return SQLAlchemyDatasource(database_url)

    def _check(self, dbos: Any) -> None:
        import psycopg.conninfo
        from sqlalchemy.engine import make_url
        from ._dbos import libpq_url
        mine = make_url(self.database_url).database
        system = psycopg.conninfo.conninfo_to_dict(libpq_url(dbos._dsn)).get("dbname")
        if mine and system and mine != system:
            raise _errors.DBOSException(
                f"SQLAlchemyDatasource on database {mine!r}: pg_workflow runs transactions in the "
                f"system database {system!r} (their checkpoint commits with them); use the same one")

    def transaction(self, isolation_level: str = "SERIALIZABLE", *, name: Optional[str] = None
                    ) -> Callable[[Callable], Callable]:
        from ._dbos import DBOS, _instance
        if _instance is not None:
            self._check(_instance)
        return DBOS.transaction(isolation_level, name=name)

    def sql_session(self) -> Any:
        return current_session()
