"""One library, both workloads, in this process: prints "W1 W2" in workflows per second.

    python bench.py dbos|hand|sdk N
    python bench.py dbos-fast N         (prints W2 only: DBOS's queue polled every 10 ms)

W1: N ten-step workflows one after another (each step returns a small dict).
W2: N such workflows enqueued on a queue and drained by 16 workers in this process; the
    clock runs from the first enqueue until the last run has ended, with the workers already
    started. Every library first runs a few warm-up workflows, outside the clock.

Environment: BENCH_DSN (libpq, the pg_workflow database), DBOS_URL and DBOS_FAST_URL
(SQLAlchemy URLs of DBOS's own system databases), BENCH_QUEUE (our queue for W2, created beforehand),
DBOS_FAST_POLL (the fast queue's polling interval in seconds, DBOS's default being 1.0), WARMUP.
"""
import os, sys, threading, time, uuid

STEPS = 10
WORKERS = 16
WARMUP = int(os.environ.get("WARMUP", "10"))


def step_output(n, i):
    return {"n": n, "step": i, "ok": True}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --- (a) DBOS Transact-py ------------------------------------------------------------------

def bench_dbos(n, fast=False):
    """W1 and W2 with DBOS's defaults; with fast: W2 alone, on a queue polled every
    DBOS_FAST_POLL seconds (DBOS at its quickest). DBOS polls every queue of its system
    database, so the fast queue lives in a database of its own (DBOS_FAST_URL): its polling
    must not load the other runs."""
    import logging
    from dbos import DBOS

    url = os.environ["DBOS_FAST_URL" if fast else "DBOS_URL"]
    DBOS(config={"name": "pgwf-sdkbench", "system_database_url": url,
                 "application_version": "bench", "log_level": "WARNING"})

    @DBOS.step()
    def step(wf_n, i):
        return step_output(wf_n, i)

    @DBOS.workflow()
    def ten_steps(wf_n):
        return [step(wf_n, i) for i in range(1, STEPS + 1)][-1]

    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    if fast:
        queue = DBOS.register_queue("w2_fast", worker_concurrency=WORKERS,
                                    polling_interval_sec=float(os.environ.get("DBOS_FAST_POLL", "0.01")))
    else:
        queue = DBOS.register_queue("w2", worker_concurrency=WORKERS)  # polled every 1 s
    try:
        for k in range(WARMUP):
            DBOS.start_workflow(ten_steps, k).get_result()

        def w1():
            for k in range(n):
                DBOS.start_workflow(ten_steps, k).get_result()

        def w2():
            handles = [queue.enqueue(ten_steps, k) for k in range(n)]
            for h in handles:
                h.get_result()

        return (timed(w2),) if fast else (timed(w1), timed(w2))
    finally:
        DBOS.destroy()


# --- (b) hand-written psycopg over our SQL ---------------------------------------------------

def run_body(conn, wid, wf_n, executor):
    """start has claimed wid (or dequeue has): 10 step_put, then finish."""
    last = None
    for i in range(1, STEPS + 1):
        last = step_output(wf_n, i)
        conn.execute("SELECT workflow.step_put(%s, %s, %s, %s, NULL, %s)",
                     (wid, i, f"step{i}", Jsonb(last), executor))
    conn.execute("SELECT workflow.finish(%s, %s, %s)", (wid, Jsonb(last), executor))


def bench_hand(n):
    global Jsonb
    import psycopg
    from psycopg.types.json import Jsonb

    dsn, queue = os.environ["BENCH_DSN"], os.environ["BENCH_QUEUE"]
    executor = f"hand-{uuid.uuid4()}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT workflow.register_executor(%s, 'bench')", (executor,))

    def one(k):
        wid = str(uuid.uuid4())
        status, last_step, claimed = conn.execute(
            "SELECT status, last_step, claimed FROM workflow.start('ten_steps', %s, %s, %s)",
            (Jsonb({"n": k}), wid, executor)).fetchone()
        assert claimed and last_step == 0, (status, last_step, claimed)
        run_body(conn, wid, k, executor)

    for k in range(WARMUP):
        one(k)

    def w1():
        for k in range(n):
            one(k)

    def w2():
        # 16 dequeuing threads, each on its own connection, started before the clock.
        done = threading.Semaphore(0)
        stop = threading.Event()
        ready = threading.Barrier(WORKERS + 1)
        errors = []

        def worker():
            try:
                with psycopg.connect(dsn, autocommit=True) as c:
                    ready.wait()
                    while not stop.is_set():
                        row = c.execute(
                            "SELECT workflow_id, input FROM workflow.dequeue(%s, %s, 1, '200 ms')",
                            (queue, executor)).fetchone()
                        if row is None:
                            continue
                        run_body(c, row[0], row[1]["n"], executor)
                        done.release()
            except BaseException as e:  # a failure must end the run, not hang it
                errors.append(e)
                for _ in range(n):
                    done.release()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        ready.wait()
        t0 = time.perf_counter()
        for k in range(n):
            conn.execute("SELECT workflow.enqueue(%s, 'ten_steps', %s, app_version => 'bench')",
                         (queue, Jsonb({"n": k})))
        for _ in range(n):
            done.acquire()
        elapsed = time.perf_counter() - t0
        stop.set()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return elapsed

    return timed(w1), w2()


# --- (c) our SDK ----------------------------------------------------------------------------

def bench_sdk(n):
    import pg_workflow

    dsn, queue = os.environ["BENCH_DSN"], os.environ["BENCH_QUEUE"]
    app = pg_workflow.App(dsn, app_version="bench")

    @app.step()
    def step(wf_n, i):
        return step_output(wf_n, i)

    @app.workflow()
    def ten_steps(wf_n):
        return [step(wf_n, i) for i in range(1, STEPS + 1)][-1]

    for k in range(WARMUP):
        app.start(ten_steps, k).result()

    def w1():
        for k in range(n):
            app.start(ten_steps, k).result()

    worker = app.worker(queues=[queue], concurrency=WORKERS)
    worker.start()
    try:
        def w2():
            handles = [app.enqueue(queue, ten_steps, k) for k in range(n)]
            for h in handles:
                h.result()

        return timed(w1), timed(w2)
    finally:
        worker.stop()
        close = getattr(app, "close", None)
        if close:
            close()


if __name__ == "__main__":
    lib, n = sys.argv[1], int(sys.argv[2])
    times = {"dbos": bench_dbos, "dbos-fast": lambda n: bench_dbos(n, fast=True),
             "hand": bench_hand, "sdk": bench_sdk}[lib](n)
    print(" ".join(f"{n / t:.1f}" for t in times))
