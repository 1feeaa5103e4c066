"""A transaction is whole on both databases, savepoints included."""

import threading

import pytest
from sqlalchemy import func, select, update

from kesher.accounts.models import Workspace
from kesher.db import session as session_module
from kesher.db.session import hold_writer_turn
from kesher.events import catalogue
from kesher.events.ingest import ingest
from kesher.events.models import Product
from tests.channels.conftest import wait_for
from tests.locks import waiting_for_locks


def _workspaces(database, slug: str) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Workspace).where(Workspace.slug == slug)) or 0


def test_a_released_savepoint_is_undone_with_its_transaction(database):
    """SQLite's driver would start the transaction with the SAVEPOINT itself, and its RELEASE would commit."""
    with pytest.raises(RuntimeError), database.session() as session:
        session.get(Workspace, 1)  # a read first, as services do
        with session.begin_nested():
            session.add(Workspace(slug="half-written", name="Half written"))
        session.flush()
        raise RuntimeError("the rest of the work failed")
    assert _workspaces(database, "half-written") == 0


def test_work_after_a_savepoint_commits_with_it(database):
    with database.session() as session:
        with session.begin_nested():
            session.add(Workspace(slug="saved-first", name="Saved first"))
        session.add(Workspace(slug="saved-after", name="Saved after"))
    assert _workspaces(database, "saved-first") == _workspaces(database, "saved-after") == 1


# The writer turn (SQLite): ingest waits for it as the kernel queues waiters ----------------------


def _turn_taken_in_thread(database, holder_done: threading.Event) -> tuple[threading.Thread, list[bool]]:
    """A thread that takes the turn in a session of its own; records whether the holder had finished by then."""
    seen: list[bool] = []

    def take() -> None:
        with database.session() as other:
            hold_writer_turn(other)
            seen.append(holder_done.is_set())

    return threading.Thread(target=take), seen


def test_the_writer_turn_is_held_until_the_transaction_ends(database):
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL writers need no turn")
    done = threading.Event()
    with database.session() as session:
        hold_writer_turn(session)
        session.add(Workspace(slug="turn-holder", name="Turn holder"))
        waiter, seen = _turn_taken_in_thread(database, done)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "the other session took the turn while this one held it"
        done.set()
    waiter.join(10)
    assert seen == [True]
    # Given back on a rollback too.
    done = threading.Event()
    with pytest.raises(RuntimeError), database.session() as session:
        hold_writer_turn(session)
        done.set()
        raise RuntimeError("failed")
    waiter, seen = _turn_taken_in_thread(database, done)
    waiter.start()
    waiter.join(10)
    assert seen == [True]


def test_a_transaction_that_wrote_before_ingest_does_not_wait_for_the_turn(database, workspace):
    """It holds the database's own lock, which the holder of the turn may be waiting for: waiting would deadlock."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL writers need no turn")
    with database.session() as first:
        first.get_one(Workspace, workspace.id).name = "written first"
        first.flush()  # the database's write lock is this session's now
        turn_waits = threading.Event()

        def hold_turn_then_write() -> None:
            with database.session() as second:
                hold_writer_turn(second)
                turn_waits.set()
                second.add(Workspace(slug="after-first", name="After first"))  # waits for `first` to commit

        holder = threading.Thread(target=hold_turn_then_write)
        holder.start()
        assert turn_waits.wait(10)
        result = ingest(first, first.get_one(Workspace, workspace.id), [
            {"type": "page_view", "contact": {"email": "turn@example.com"}, "properties": {"url": "https://a.example/"}}])
        assert result.accepted == 1
    holder.join(30)
    assert not holder.is_alive()
    assert _workspaces(database, "after-first") == 1


def test_a_thread_holding_the_turn_does_not_wait_for_it_in_another_session(database):
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL writers need no turn")
    finished = threading.Event()

    def outer_then_inner() -> None:
        with database.session() as session:
            hold_writer_turn(session)
            with database.sessions() as inner:
                hold_writer_turn(inner)  # returns at once: this thread holds the turn already
            finished.set()

    thread = threading.Thread(target=outer_then_inner, daemon=True)
    thread.start()
    thread.join(10)
    assert finished.is_set(), "the thread waited for the turn it holds"


def test_a_turn_held_too_long_is_waited_for_no_longer_than_sqlite_would_wait(database, monkeypatch):
    """Then the writer goes on without it, as any writer does, on SQLite's own wait."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL writers need no turn")
    monkeypatch.setattr(session_module, "WRITER_WAIT", 0.2)
    took: list[bool] = []
    with database.session() as holder:
        hold_writer_turn(holder)

        def other() -> None:
            with database.session() as session:
                hold_writer_turn(session)
                took.append("writer_turn" in session.info)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
    assert took == [False]


# Writers of the same rows take their locks in one order (PostgreSQL) --------------------------------


def test_two_orders_with_the_same_products_in_opposite_orders_both_refresh_the_catalogue(database, workspace):
    """Each locks the rows it merges in key order, so neither can hold one the other waits for while waiting.

    Given in the order of their lines, the first would lock A and wait for C (held by a third
    transaction), the second B and then wait for C too; once C was free, the first would wait for B
    and the second for A, and PostgreSQL would fail one of them as a deadlock.
    """
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no two writers wait for each other")
    line = {"A": {"sku": "A", "name": "Apples", "price": 1.0}, "B": {"sku": "B", "name": "Bread", "price": 2.0},
            "C": {"sku": "C", "name": "Cheese", "price": 3.0}}
    with database.session() as session:
        catalogue.upsert_from_order(session, workspace.id, line.values(), source="woocommerce")
    failures: list[BaseException] = []

    def order(skus: str, price: float) -> threading.Thread:
        def run() -> None:
            try:
                with database.session() as session:
                    catalogue.upsert_from_order(session, workspace.id, [line[s] | {"price": price} for s in skus],
                                                source="woocommerce")
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        return threading.Thread(target=run)

    with database.session() as blocker:
        blocker.execute(update(Product).where(Product.workspace_id == workspace.id, Product.sku == "C")
                        .values(name="Cheese (held)"))
        first, second = order("ACB", 10.0), order("BCA", 20.0)
        first.start()
        wait_for(lambda: waiting_for_locks(database) == 1, seconds=10)
        second.start()
        wait_for(lambda: waiting_for_locks(database) == 2, seconds=10)
    for thread in (first, second):
        thread.join(30)
    assert failures == []
    with database.session() as session:
        prices = set(session.scalars(select(Product.price).where(Product.workspace_id == workspace.id)))
    assert len(prices) == 1 and prices <= {10.0, 20.0}  # one order's prices on all three, whichever came last


def test_reads_passing_through_keep_a_small_page_cache_then_give_the_whole_one_back(database):
    from sqlalchemy import text

    from kesher.db.session import PAGE_CACHE_KB, PASSING_CACHE_KB, passing_through

    sqlite = database.engine.dialect.name == "sqlite"
    with database.session() as session:
        def cache() -> int | None:
            return session.execute(text("PRAGMA cache_size")).scalar() if sqlite else None

        whole, small = (-PAGE_CACHE_KB, -PASSING_CACHE_KB) if sqlite else (None, None)
        assert cache() == whole
        with passing_through(session):
            assert cache() == small
            assert session.execute(select(func.count()).select_from(Workspace)).scalar() >= 0
        assert cache() == whole
        with pytest.raises(ZeroDivisionError), passing_through(session):
            1 / 0
        assert cache() == whole
