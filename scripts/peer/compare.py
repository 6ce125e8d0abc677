"""Weft beside Celery, like for like, from one `scripts/bench.sh` run.

Reads the JSON figures of both suites (target/bench/weft.json from
`cargo bench -p weft-tests --bench engine -- --json`, target/bench/celery.json
from `scripts/peer/celery.sh --json`) and prints each pair measured the same
way — engine-recorded (each engine's own record of the end) and
client-observed (a warm client: submit -> final result in hand) — with the
ratio and issue 18's target for it. A figure missing from either file (a
scenario not run) is said so, never guessed.

    python3 scripts/peer/compare.py target/bench/weft.json target/bench/celery.json
"""

import json
import sys

# (what, Weft's scenario and figure, Celery's, how Weft must compare:
#  ("sooner", k) = Weft's time <= Celery's / k; ("faster", k) = Weft's rate
#  >= Celery's * k)
PAIRS = [
    ("chain of 4, engine-recorded p50", ("latency-linear4", "p50"), ("celery chain-4", "p50"), ("sooner", 2.0)),
    ("chain of 4, engine-recorded p90", ("latency-linear4", "p90"), ("celery chain-4", "p90"), None),
    ("chain of 4, client-observed p50", ("latency-linear4 client", "p50"), ("celery chain-4 client", "p50"), ("sooner", 2.0)),
    ("chain of 4 by `weft submit`, engine p50", ("latency-linear4 weft submit", "p50"), ("celery chain-4", "p50"), None),
    ("fan-out 1,000 -> join", ("fanout 1000 unbounded", "join_done"), ("celery chord-1000", "join_done"), ("sooner", 30.0)),
    ("independent tasks", ("throughput-runs 1+1", "tasks/s"), ("celery tasks-5000", "tasks/s"), None),
]


def load(path):
    with open(path) as f:
        return {(x["scenario"], x["figure"]): x for x in json.load(f)}


def main():
    weft, celery = load(sys.argv[1]), load(sys.argv[2])
    print(f"{'like for like':<42} {'Weft':>12} {'Celery':>12} {'ratio':>8}  target")
    failed = 0
    for what, w, c, target in PAIRS:
        if w not in weft or c not in celery:
            missing = " and ".join(f"`{k[0]} {k[1]}`" for k, d in ((w, weft), (c, celery)) if k not in d)
            print(f"{what:<42} not measured in this run ({missing})")
            continue
        a, b = weft[w], celery[c]
        rate = a["unit"].endswith("/s")
        ratio = a["value"] / b["value"] if rate else b["value"] / a["value"]
        verdict = ""
        if target is not None:
            kind, k = target
            met = ratio >= k
            failed += not met
            verdict = f"{'>=' if kind == 'faster' else ''}{k:g}x {kind}: {'met' if met else 'NOT met'}"
        shown = lambda x: f"{x['value']:.2f} {x['unit']}"
        word = "faster" if rate else "sooner"
        print(f"{what:<42} {shown(a):>12} {shown(b):>12} {ratio:>6.1f}x {word:<7} {verdict}")
    s2s = weft.get(("start-to-start", "p50"))
    if s2s is not None:
        met = s2s["value"] <= 2.0
        failed += not met
        print(f"{'start-to-start p50 (Weft alone)':<42} {s2s['value']:>9.2f} ms {'':>12} {'':>8}  <= 2 ms: {'met' if met else 'NOT met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
