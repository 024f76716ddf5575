"""Print the wall time of each pipeline of the last demo run, from the run's own records.

`make run` is two Kedro runs (the demo data and encoder, made once; then the analysis), and
every Kedro run of this project saves `run_timings` (hooks.RunTimingHook: each node's time,
summed per pipeline). This script reads the newest versions, by default the runs since the
newest one that made the demo data, and prints them side by side:

    .venv/bin/python benchmarks/demo_run.py                  # after `make run`
    .venv/bin/python benchmarks/demo_run.py --project /tmp/clone --runs 2

The time to build the virtual environment is not part of any Kedro run: time `make venv`
(or the whole `make run` on a fresh clone) for it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def newest_runs(project: Path, count: int | None) -> list[dict]:
    """The newest `count` run_timings records (or those since the newest demo_data run), oldest first."""
    folder = project / "data" / "08_reporting" / "run_timings.json"
    records = [json.loads((version / "run_timings.json").read_text(encoding="utf-8"))
               for version in sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    if not records:
        raise SystemExit(f"no run_timings under {folder}: run the demo first (`make run`)")
    if count is not None:
        return records[-count:]
    starts = [i for i, record in enumerate(records) if "demo_data" in record["seconds_by_pipeline"]]
    return records[starts[-1]:] if starts else records[-1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=REPO, help="the project folder that ran the demo")
    parser.add_argument("--runs", type=int, default=None, help="the newest N runs (default: since the demo data)")
    args = parser.parse_args()
    runs = newest_runs(args.project, args.runs)
    # each pipeline where its last node ran: the order the runs went through them
    last_node = {entry["pipeline"]: (r, i) for r, record in enumerate(runs) for i, entry in enumerate(record["nodes"])}
    order = sorted(last_node, key=last_node.__getitem__)
    header = " | ".join(f"run {i + 1}: {', '.join(r['pipelines'])}" for i, r in enumerate(runs))
    print(f"| pipeline | {header} |")
    print("| --- |" + " --- |" * len(runs))
    for name in order:
        cells = [f"{r['seconds_by_pipeline'][name]:.1f} s" if name in r["seconds_by_pipeline"] else "" for r in runs]
        print(f"| {name or '(no namespace)'} | {' | '.join(cells)} |")
    walls = [r["wall_seconds"] for r in runs]
    print(f"| wall time of the run | {' | '.join(f'{w:.1f} s' for w in walls)} |")
    print(f"\ntotal wall time of the {len(runs)} run(s): {sum(walls):.1f} s ({sum(walls) / 60:.1f} min)")


if __name__ == "__main__":
    main()
