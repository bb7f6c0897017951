"""DBOS's transactions: 2.x @DBOS.transaction with DBOS.sql_session, and 3.x
SQLAlchemyDatasource (@ds.transaction, ds.sql_session()). Needs pg-workflow[dbos]."""
import uuid

import pytest

sa = pytest.importorskip("sqlalchemy")

from pg_workflow.dbos import DBOS, SetWorkflowID, SQLAlchemyDatasource  # noqa: E402


@pytest.fixture()
def greetings(sql):
    sql("CREATE TABLE IF NOT EXISTS greetings (name text, note text)")
    sql("TRUNCATE greetings")
    return lambda: sql("SELECT name, note FROM greetings ORDER BY name, note")


def test_transaction_with_sql_session(dbos, greetings):
    @DBOS.transaction()
    def insert_greeting(name, note):
        DBOS.sql_session.execute(sa.text("INSERT INTO greetings VALUES (:n, :t)"), {"n": name, "t": note})
        return DBOS.sql_session.execute(sa.text("SELECT count(*) FROM greetings")).scalar()

    @DBOS.workflow()
    def greeting_workflow(name):
        return insert_greeting(name, "hi")

    wid = uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert greeting_workflow("ada") == 1
    with SetWorkflowID(wid):  # the same run: the insert is not repeated
        assert greeting_workflow("ada") == 1
    assert greetings() == [("ada", "hi")]


def test_failed_transaction_rolls_back(dbos, greetings):
    @DBOS.transaction()
    def insert_then_fail():
        DBOS.sql_session.execute(sa.text("INSERT INTO greetings VALUES ('x', 'y')"))
        raise RuntimeError("no")

    @DBOS.workflow()
    def wf():
        try:
            insert_then_fail()
        except RuntimeError:
            return "caught"

    assert wf() == "caught"
    assert greetings() == []


def test_datasource_transaction(dbos, database, greetings):
    ds = SQLAlchemyDatasource.create(database.replace("postgresql://", "postgresql+psycopg://"))

    @ds.transaction()
    def insert(name):
        ds.sql_session().execute(sa.text("INSERT INTO greetings VALUES (:n, 'ds')"), {"n": name})

    @DBOS.workflow()
    def wf():
        insert("bob")
        return "done"

    assert wf() == "done"
    assert greetings() == [("bob", "ds")]
