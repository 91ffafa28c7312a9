"""Benchmark: a fresh machine's README, for a user without Go. An empty cache, ``PATH`` without
``go``, the official download sites' layouts served on 127.0.0.1 with this machine's real
binaries (``tests/download_mirror.py``), a clean clone of this checkout; then, timed one after
the other, the README's set-up (``binaries --build``, ``doctor``, the 1.36 binaries for the
project's own tests) and its test command (``pytest -n 2``).

The other way to fill a cache, offline with Go (every binary built from the Go module proxy),
is measured by a cold ``.ci/run`` (README: 12.3 min of binaries on 2 cores); not repeated here.

    nice -n 10 python bench/fresh_user.py

Writes bench/results/fresh_user.json.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from download_mirror import fill, path_without, serve  # noqa: E402

from pytest_vcluster.binaries import TOOLS  # noqa: E402
from pytest_vcluster.versions import parse_k8s_version  # noqa: E402

RESULTS = ROOT / "bench" / "results"
OLDER = ("kube-apiserver", "kube-controller-manager")  # README: the 1.36 line
OLDER_CSV = [",".join(OLDER)]


def _timed(args: list[str], env: dict[str, str], cwd: Path, timeout: int) -> dict[str, object]:
    t0 = time.monotonic()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    took = round(time.monotonic() - t0, 1)
    print(f"[{took:7.1f}s] rc={proc.returncode} {' '.join(args)}", flush=True)
    return {"cmd": " ".join(args), "s": took, "rc": proc.returncode, "tail": proc.stdout[-1500:]}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-fresh-user-"))
    mirror = work / "mirror"
    fill(mirror, TOOLS, parse_k8s_version(None))
    fill(mirror, OLDER, parse_k8s_version("1.36"))
    served = sum(p.stat().st_size for p in mirror.rglob("*") if p.is_file())
    checkout = work / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
    with serve(mirror) as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_VCLUSTER_")},
            "PATH": path_without("go", "gofmt", bin_dir=work / "bin", path=os.environ["PATH"]),
            "PYTEST_VCLUSTER_DOWNLOAD_URL": url,
            "PYTEST_VCLUSTER_CACHE_DIR": str(work / "cache"),
            "PYTHONPATH": str(checkout),  # the clone's code, not this checkout's
        }
        cli = ["pytest-vcluster"]
        steps = [
            _timed([*cli, "binaries", "--build"], env, checkout, 1800),
            _timed([*cli, "doctor", "--no-docker"], env, checkout, 300),
            _timed(
                [*cli, "binaries", "--build", "--k8s-version", "1.36", "--tools", *OLDER_CSV],
                env,
                checkout,
                1800,
            ),
            _timed(["pytest", "-n", "2", "-p", "no:cacheprovider", "-q"], env, checkout, 5400),
        ]
    summary = re.findall(r"(\d+) (passed|failed|skipped|errors?)", str(steps[-1]["tail"]))
    setup_s = sum(float(str(s["s"])) for s in steps[:3])
    result = {
        "bench": "fresh_user",
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "served_mib": round(served / 2**20),
        "setup_s": round(setup_s, 1),
        "tests_s": steps[-1]["s"],
        "total_s": round(setup_s + float(str(steps[-1]["s"])), 1),
        "tests": {kind: int(n) for n, kind in summary},
        "steps": steps,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fresh_user.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0 if all(s["rc"] == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
