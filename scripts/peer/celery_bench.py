"""The peer benchmark: the same workflow shapes on Celery, side by side.

Celery from PyPI, on the same RabbitMQ broker (a vhost of its own) with a
PostgreSQL result backend (`db+postgresql`, SQLAlchemy), so every task's
state is durable as Weft's is. Shapes, as in Weft's suite:

  chain-4     a chain of 4 `echo` tasks, submitted one at a time (submit ->
              final result), p50 / p90 / p99 over RUNS runs
  chord-1000  a chord of 1,000 `noop` tasks joined by a callback that counts
              them (submit -> callback result)
  tasks-5000  5,000 independent `noop` tasks: completed tasks per second

Each shape checks its result (the chain's value, the chord's count, every
task succeeded). Run by `scripts/peer/celery.sh`, which starts the worker.
Prints one line per figure, like `cargo bench -p weft-tests --bench engine`,
or one JSON array with `--json`.
"""

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

    # Warm up connections and the backend's tables.
    for _ in range(5):
        assert chain(echo.s(0), echo.s(), echo.s(), echo.s())().get(timeout=60, interval=0.002) == 4

    latencies = []
    for _ in range(runs):
        start = time.perf_counter()
        value = chain(echo.s(0), echo.s(), echo.s(), echo.s())().get(timeout=60, interval=0.002)
        latencies.append((time.perf_counter() - start) * 1000)
        assert value == 4, f"the chain returned {value}"
    p50, p90, p99 = percentiles(latencies)
    add("celery chain-4", "p50", p50, "ms")
    add("celery chain-4", "p90", p90, "ms")
    add("celery chain-4", "p99", p99, "ms")

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
