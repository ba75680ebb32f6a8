"""Two versions of the worker side by side: alternating runs over the same queued events.

    .venv/bin/python -m bench.ab_worker --base 50165a2 [--events 20000] [--trials 4]

The machine's speed drifts between runs minutes apart, so versions are compared only in
alternating runs against one broker and Redis (started here). ``--base`` is checked out into a
temporary git worktree; each side exports its own default-sized model with its own code and runs
one worker process per trial (``PYTHONPATH`` = that side's tree) over a fresh topic holding the
same events, windows filling, as ``bench.worker_bench`` (b). Logs events/s and stage µs/event per
run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import make_topics, payloads, services, shopper_events
from bench.worker_bench import produce_all, redis_cpu_s

logger = logging.getLogger("bench.ab_worker")
REPO = Path(__file__).resolve().parent.parent
USERS = 400
# Run inside each side's tree: only what bench.worker_bench and bench.common offered at 50165a2.
_EXPORT = "import sys; from pathlib import Path; from bench.common import export_model; export_model(Path(sys.argv[1]))"
_RUN = """
import asyncio, json, logging, sys
from pathlib import Path
from bench.common import Services
from bench.worker_bench import pipeline, settings_for
logging.basicConfig(level=logging.WARNING)
bootstrap, redis_url, registry, prefix, n = sys.argv[1:6]
topics = {k: f"{prefix}.{k}" for k in ("events", "predictions", "dlq")}
settings = settings_for(Services(bootstrap, redis_url), Path(registry), topics, prefix)
print(json.dumps(asyncio.run(pipeline(settings, int(n)))))
"""


def _python(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    # cwd = that tree too: ``python -c`` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so a run started from this checkout would import this tree's code for both sides.
    done = subprocess.run([sys.executable, *args], env=env, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{root}: {args[:2]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


async def compare(base: str, n_events: int, trials: int) -> dict[str, list[dict[str, Any]]]:
    work = Path(tempfile.mkdtemp(prefix="ds-ab-"))
    base_tree = work / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), base], check=True)
    roots = {f"base {base}": base_tree, "this tree": REPO}
    try:
        registries: dict[str, Path] = {}
        for side, root in roots.items():
            registries[side] = work / f"models-{len(registries)}"
            await asyncio.to_thread(_python, root, "-c", _EXPORT, str(registries[side]))
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in roots}
        async with services(work) as svc:
            events = payloads(shopper_events(n_events, USERS, seed=1))
            for trial in range(trials):
                order = list(roots) if trial % 2 == 0 else list(roots)[::-1]
                for side in order:
                    prefix = f"ab{trial}-{list(roots).index(side)}"
                    await make_topics(svc.bootstrap, [f"{prefix}.{k}" for k in ("events", "predictions", "dlq")], 4)
                    await produce_all(svc.bootstrap, f"{prefix}.events", events)
                    redis0 = await redis_cpu_s(svc.redis_url)
                    out = await asyncio.to_thread(
                        _python, roots[side], "-c", _RUN, svc.bootstrap, svc.redis_url,
                        str(registries[side]), prefix, str(n_events),
                    )  # fmt: skip
                    run = json.loads(out.strip().splitlines()[-1])
                    # redis-server's CPU over the whole run (loads at first sight included), per event:
                    # measured here, so that a base without the measurement gets it too.
                    run["redis_run_cpu_us_per_event"] = 1e6 * (await redis_cpu_s(svc.redis_url) - redis0) / n_events
                    results[side].append(run)
                    stages = run["stage_us_per_event"]
                    logger.info(
                        "%s, trial %d: %.0f events/s; worker CPU %.1f + redis-server %.1f µs/event; "
                        "stages µs/event model %.1f, redis %.1f, produce %.1f, decode %.1f",
                        side, trial, run["events_per_s"], run["cpu_us_per_event"], run["redis_run_cpu_us_per_event"],
                        stages["model"], stages["redis"], stages["produce"], stages["decode"],
                    )  # fmt: skip
        for side, runs in results.items():
            logger.info(
                "%s: median %.0f events/s, worker CPU %.1f + redis-server %.1f µs/event, stages model %.1f, "
                "redis %.1f µs/event",
                side,
                statistics.median(r["events_per_s"] for r in runs),
                statistics.median(r["cpu_us_per_event"] for r in runs),
                statistics.median(r["redis_run_cpu_us_per_event"] for r in runs),
                statistics.median(r["stage_us_per_event"]["model"] for r in runs),
                statistics.median(r["stage_us_per_event"]["redis"] for r in runs),
            )
        return results
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="git revision to compare this tree against")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(compare(args.base, args.events, args.trials))


if __name__ == "__main__":
    cli()
