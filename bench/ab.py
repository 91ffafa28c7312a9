"""Benchmark driver: one benchmark script at two commits, alternating, same machine, same run.

    python bench/ab.py --old 62e895f --bench plugin -- --vclusters 3 --density 0
    python bench/ab.py --old 62e895f --bench incluster -- --runs 3 --kind-runs 0 --density 0

The old commit is checked out into a temporary git worktree; each round runs that commit's own
``bench/<name>.py`` with that commit's code first on ``PYTHONPATH`` (the old and new scripts
may differ where the code they import changed), then the same for the working tree, and so on
for ``--rounds`` rounds. Alternating spreads the machine's drift (load, page cache, thermal)
over both sides. Each side's samples of every round are pooled: the ready time per vcluster
(``samples.sequential[].ready_s``) and, where the script reports them, its other samples.

Writes bench/results/ab-<bench>.json: per side the pooled ready p50/p95, the per-round p50s,
and the change of the new p50 against the old one in percent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p * len(s)))], 3)


def ready_samples(result: dict[str, Any]) -> list[float]:
    """Ready seconds of every sequential vcluster a benchmark's JSON holds (bench/plugin.py
    keeps them under samples.sequential, bench/incluster.py under sequential.samples)."""
    samples = result.get("samples")
    seq = samples.get("sequential") if isinstance(samples, dict) else None
    if seq is None and isinstance(result.get("sequential"), dict):
        seq = result["sequential"].get("samples")
    out = [float(s["ready_s"]) for s in seq or [] if isinstance(s, dict) and "ready_s" in s]
    if not out:
        raise SystemExit(f"no sequential ready samples in the benchmark's JSON: {list(result)}")
    return out


def stage_samples(result: dict[str, Any]) -> list[dict[str, float]]:
    """Per vcluster, the seconds at which each readiness stage passed (bench/incluster.py)."""
    seq = (result.get("sequential") or {}).get("samples") or []
    return [s["stages"] for s in seq if isinstance(s, dict) and isinstance(s.get("stages"), dict)]


def run_side(tree: Path, bench: str, extra: list[str], out: Path) -> dict[str, Any]:
    # -P: not the script's folder first: the tree's code first, its bench/ helpers after.
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'bench'}")
    script = tree / "bench" / f"{bench}.py"
    argv = [sys.executable, "-P", str(script), *extra, "--out", str(out)]
    print(f"ab: {tree.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="the commit to compare against")
    ap.add_argument("--bench", required=True, choices=["plugin", "incluster"])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("extra", nargs="*", help="arguments for the benchmark script (after --)")
    args = ap.parse_args()
    old_rev = subprocess.run(
        ["git", "rev-parse", args.old], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    new_rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    samples: dict[str, list[float]] = {"old": [], "new": []}
    stages: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    rounds: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="pytest-vcluster-ab-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old_tree), old_rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            trees = {"old": old_tree, "new": ROOT}
            for i in range(args.rounds):
                for side in ("old", "new") if i % 2 == 0 else ("new", "old"):
                    out = Path(tmp) / f"{side}-{i}.json"
                    side_result = run_side(trees[side], args.bench, args.extra, out)
                    got = ready_samples(side_result)
                    stages[side].extend(stage_samples(side_result))
                    samples[side].extend(got)
                    rounds[side].append(round(statistics.median(got), 3))
                    print(f"ab: round {i} {side}: ready p50 {rounds[side][-1]}s", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT)
            shutil.rmtree(old_tree, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": f"ab-{args.bench}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": __doc__,
        "bench_args": args.extra,
        "rounds": args.rounds,
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "old": {"commit": old_rev},
        "new": {"commit": new_rev, "uncommitted_changes": dirty},
    }
    for side in ("old", "new"):
        result[side].update(
            {
                "ready_p50_s": q(samples[side], 0.5),
                "ready_p95_s": q(samples[side], 0.95),
                "round_p50s_s": rounds[side],
                "samples": len(samples[side]),
            }
        )
        if stages[side]:
            names = list(dict.fromkeys(k for st in stages[side] for k in st))
            result[side]["stage_p50_s"] = {
                k: q([st[k] for st in stages[side] if k in st], 0.5) for k in names
            }
    common = [
        k for k in result["old"].get("stage_p50_s", {}) if k in result["new"].get("stage_p50_s", {})
    ]
    if common:
        # A stage only one side has (a new wait, say) is not the code's speed: compare both
        # sides up to the last stage they share as well.
        last = common[-1]
        old_last = result["old"]["stage_p50_s"][last]
        new_last = result["new"]["stage_p50_s"][last]
        result["last_common_stage"] = {
            "stage": last,
            "old_p50_s": old_last,
            "new_p50_s": new_last,
            "new_vs_old_percent": round((new_last / old_last - 1) * 100, 1),
        }
    change = (result["new"]["ready_p50_s"] / result["old"]["ready_p50_s"] - 1) * 100
    result["new_vs_old_p50_percent"] = round(change, 1)
    out = args.out or RESULTS / f"ab-{args.bench}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "method"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
