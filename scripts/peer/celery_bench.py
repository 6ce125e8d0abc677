"""The peer benchmark: the same workflow shapes on Celery, side by side.

Celery from PyPI, on the same RabbitMQ broker (a vhost of its own) with a
PostgreSQL result backend (`db+postgresql`, SQLAlchemy), so every task's
state is durable as Weft's is. Shapes, as in Weft's suite:

  chain-4     a chain of 4 `echo` tasks, submitted one at a time, p50 / p90
              / p99 over RUNS runs, measured both ways:
              engine   the client's clock just before the publish -> the last
                       task's `celery_taskmeta.date_done` (the worker's clock
                       when it stored the result: Celery's own record of
                       the end; same machine, same clock)
              client   the `apply_async` call starts -> `result.get()`
                       returns the value (polling the result backend every
                       2 ms: GET_INTERVAL; Celery's default is 0.5 s)
  chord-1000  a chord of 1,000 `noop` tasks joined by a callback that counts
              them (submit -> callback result)
  tasks-5000  5,000 independent `noop` tasks: completed tasks per second

Each shape checks its result (the chain's value, the chord's count, every
task succeeded). Run by `scripts/peer/celery.sh`, which starts the worker.
Prints one line per figure, like `cargo bench -p weft-tests --bench engine`,
or one JSON array with `--json`.
"""

import calendar
import json
import os
import statistics
import sys
import time

import psycopg2
from celery import Celery, chain, chord

BROKER = os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672/weft_peer")
BACKEND = os.environ.get(
    "CELERY_BACKEND", "db+postgresql+psycopg2://postgres@127.0.0.1:5432/weft_peer"
)

PG_DSN = os.environ.get("CELERY_PG_DSN", "host=127.0.0.1 user=postgres dbname=weft_peer")

# How often `result.get()` polls the database backend, in seconds. Celery's
# default (0.5 s) would put up to half a second of waiting into every
# client-observed figure; 2 ms is tuned for latency.
GET_INTERVAL = 0.002

app = Celery("celery_bench", broker=BROKER, backend=BACKEND)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Durable like Weft: persistent messages, ack after the task ran.
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    result_extended=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def echo(v):
    return v + 1


@app.task
def noop(i=None):
    return None


@app.task
def count(results):
    return {"n": len(results)}


def percentiles(samples):
    ordered = sorted(samples)

    def pct(p):
        return ordered[round((len(ordered) - 1) * p)]

    return pct(0.5), pct(0.9), pct(0.99)


def main():
    args = sys.argv[1:]
    as_json = "--json" in args
    quick = "--quick" in args
    runs = 5 if quick else 200
    width = 50 if quick else 1000
    independent = 100 if quick else 5000
    figures = []

    def add(scenario, figure, value, unit):
        figures.append({"scenario": scenario, "figure": figure, "value": value, "unit": unit})
        if not as_json:
            print(f"{scenario:<34} {figure:<14} {value:>10.2f} {unit}", flush=True)

    # A warm client. Celery's database backend pools its connections only in
    # forked processes (its prefork workers' children); in any other process
    # every poll of `result.get()` builds an engine with SQLAlchemy's NullPool
    # and opens a new PostgreSQL connection (17-25 ms a poll on this machine,
    # measured, against ~1 ms pooled). Marking the client's session manager
    # as forked gives it the workers' pooled engine, as Weft's client keeps
    # its pool.
    app.backend.session_manager._after_fork()
    # Warm up connections and the backend's tables.
    for _ in range(5):
        assert chain(echo.s(0), echo.s(), echo.s(), echo.s())().get(timeout=60, interval=GET_INTERVAL) == 4

    client_ms = []
    starts = []
    last_ids = []
    for _ in range(runs):
        start_wall = time.time()
        start = time.perf_counter()
        result = chain(echo.s(0), echo.s(), echo.s(), echo.s())()
        value = result.get(timeout=60, interval=GET_INTERVAL)
        client_ms.append((time.perf_counter() - start) * 1000)
        assert value == 4, f"the chain returned {value}"
        starts.append(start_wall)
        last_ids.append(result.id)
    # Read the engine's record after the runs, so the reads do not share
    # the measured minutes. `date_done` is a `timestamp` holding UTC (the
    # worker's `app.now()`; the server's TimeZone is UTC, checked below).
    with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
        cur.execute("SHOW TimeZone")
        (zone,) = cur.fetchone()
        assert zone in ("UTC", "Etc/UTC"), f"date_done is UTC only if the server's TimeZone is: {zone}"
        cur.execute(
            "SELECT task_id, date_done FROM celery_taskmeta WHERE task_id = ANY(%s)",
            (last_ids,),
        )
        done = {task_id: calendar.timegm(d.timetuple()) + d.microsecond / 1e6 for task_id, d in cur.fetchall()}
    assert len(done) == runs, f"only {len(done)} of {runs} chains' last tasks have a date_done"
    engine_ms = []
    for start_wall, task_id, client in zip(starts, last_ids, client_ms):
        engine = (done[task_id] - start_wall) * 1000
        # Both clocks are this machine's: the engine's span lies inside the
        # client's, or one of them measures something else.
        assert 0 < engine <= client, f"chain {task_id}: engine {engine:.2f} ms, client {client:.2f} ms"
        engine_ms.append(engine)
    for name, samples in (("celery chain-4", engine_ms), ("celery chain-4 client", client_ms)):
        p50, p90, p99 = percentiles(samples)
        add(name, "p50", p50, "ms")
        add(name, "p90", p90, "ms")
        add(name, "p99", p99, "ms")

    start = time.perf_counter()
    result = chord(noop.s(i) for i in range(width))(count.s()).get(timeout=600, interval=0.01)
    elapsed = time.perf_counter() - start
    assert result == {"n": width}, f"the chord's callback saw {result}"
    add(f"celery chord-{width}", "join_done", elapsed, "s")

    start = time.perf_counter()
    pending = [noop.delay(i) for i in range(independent)]
    # Poll the result table the way Weft's harness polls its runs (not one
    # `get` per task, whose own polling would dominate).
    ids = [r.id for r in pending]
    with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*) "
                "FROM celery_taskmeta WHERE task_id = ANY(%s)",
                (ids,),
            )
            succeeded, done = cur.fetchone()
            conn.commit()
            if done == independent:
                break
            time.sleep(0.05)
    elapsed = time.perf_counter() - start
    assert succeeded == independent, f"only {succeeded} of {independent} tasks succeeded"
    add(f"celery tasks-{independent}", "tasks/s", independent / elapsed, "tasks/s")
    add(f"celery tasks-{independent}", "elapsed", elapsed, "s")

    if as_json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
