"""W1: 300 ten-step workflows one after another, the SDK against a hand-written psycopg loop
over the same SQL (start + 10 step_put + finish on one connection), in the same run.
Rounds alternate so that both see the same server state. Usage:
    python tools/w1_speed.py "host=/tmp/pgwf_sdk port=5490 user=postgres dbname=postgres" [rounds]
"""
import sys
import time
import uuid

import psycopg

import pg_workflow as pw

N, STEPS = 300, 10
dsn = sys.argv[1] if len(sys.argv) > 1 else "host=/tmp/pgwf_sdk port=5490 user=postgres dbname=postgres"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3

app = pw.App(dsn, app_version="w1")


@app.step()
def work(i: int) -> int:
    return i


@app.workflow()
def ten_steps(n: int) -> int:
    return sum(work(i) for i in range(n))


def sdk_workflows(count: int) -> None:
    for _ in range(count):
        ten_steps(STEPS)


def hand_workflows(conn: psycopg.Connection, executor: str, count: int) -> None:
    for _ in range(count):
        wid = str(uuid.uuid4())
        conn.execute("SELECT * FROM workflow.start('hand', '[10]', %s, %s)", (wid, executor))
        for i in range(STEPS):
            conn.execute("SELECT workflow.step_put(%s, %s, 'work', %s::jsonb, NULL, %s)",
                         (wid, i + 1, str(i), executor))
        conn.execute("SELECT workflow.finish(%s, '45', %s)", (wid, executor))


def timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    app.launch()
    sdk_workflows(STEPS)  # warm: the pool's connection and its prepared statements
    with psycopg.connect(dsn, autocommit=True) as conn:
        executor = f"hand-{uuid.uuid4().hex[:8]}"
        conn.execute("SELECT workflow.register_executor(%s, 'w1')", (executor,))
        hand_workflows(conn, executor, 20)
        for r in range(rounds):
            # Chunks of 30 alternate, so that both loops see the same load on a busy machine.
            sdk, hand = [0.0, 0.0], [0.0, 0.0]
            for _ in range(N // 30):
                for total, (wall, cpu) in ((hand, timed(hand_workflows, conn, executor, 30)),
                                           (sdk, timed(sdk_workflows, 30))):
                    total[0] += wall
                    total[1] += cpu
            print(f"round {r + 1}: W1 {N} x {STEPS}-step workflows: SDK {N / sdk[0]:.0f} wf/s "
                  f"({sdk[1] / N * 1e3:.2f} ms client CPU each), hand-written psycopg "
                  f"{N / hand[0]:.0f} wf/s ({hand[1] / N * 1e3:.2f} ms), ratio {hand[0] / sdk[0]:.2f}")
    app.close()


if __name__ == "__main__":
    main()
