"""Benchmark: the upstream Kubernetes conformance suite against the kind host itself and against
a vcluster on it, in the same run, with the same focus — the external yardstick.

    nice -n 19 python bench/conformance.py [--focus '\\[Conformance\\]'] [--procs 4]
    nice -n 19 python bench/conformance.py --local --focus 'sig-api-machinery.*Conformance'

Builds (cached, offline) ``e2e.test``, ``ginkgo`` and ``agnhost`` for the host's version
(bench/conformance_build.py) and the images the specs run (bench/conformance_images.py), loads
them into the kind host, then runs ``ginkgo --focus F --skip S e2e.test`` against the host's
kubeconfig and then against the vcluster's. ``--local``: a local vcluster against the local
host instead (kwok pods: only specs that need no running containers can pass on either).

Writes bench/results/conformance.json (``--out``): per side the spec names as ginkgo prints
them (passed, failed), the number skipped and the seconds, and ``vcluster_only_failures``:
specs the host passes and the vcluster fails.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conformance_build import ConformanceBuild
from conformance_images import build_images
from kindsetup import KindSetup, log

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, default_cache_dir
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import parse_k8s_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HOST = "pytest-vcluster-conformance"
SKIP = r"\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Feature:"


#: The kind host's namespaces carry no Pod Security labels (privileged) and it admits
#: externalIPs and ExternalName Services. The vcluster's chart defaults to none of these
#: (baseline: no hostNetwork, hostPort, privileged pods; externalIPs and ExternalName stay
#: virtual): compared like for like.
HOST_LIKE_VALUES: dict[str, Any] = {
    "isolation": {"podSecurityStandard": "privileged"},
    "sync": {"services": {"allowExternalIPs": True, "allowExternalName": True}},
}


def spec_name(report: dict[str, Any]) -> str:
    """The spec's full text as ginkgo prints it."""
    texts = [t for t in report.get("ContainerHierarchyTexts") or [] if t]
    return " ".join([*texts, report.get("LeafNodeText", "")]).strip()


def summarize(report_file: Path, seconds: float) -> dict[str, Any]:
    suites = json.loads(report_file.read_text())
    passed: list[str] = []
    failed: list[str] = []
    skipped = 0
    failures: dict[str, str] = {}
    interrupted: list[str] = []
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            name, state = spec_name(spec), spec.get("State")
            if state == "passed":
                passed.append(name)
            elif state in ("skipped", "pending"):
                skipped += 1
            elif state in ("interrupted", "aborted") or (
                state == "timedout" and "suite timeout" in str(spec.get("Failure") or "")
            ):
                interrupted.append(name)  # cut by the time box, not failed
            else:
                failed.append(name)
                failures[name] = ((spec.get("Failure") or {}).get("Message") or state)[:600]
    return {
        "passed": sorted(passed),
        "failed": sorted(failed),
        "skipped": skipped,
        "not_finished": sorted(interrupted),
        "seconds": round(seconds, 1),
        "failure_messages": failures,
    }


def run_suite(
    side: str,
    kubeconfig: Path,
    tools: dict[str, Path],
    args: argparse.Namespace,
    out: Path,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    report.unlink(missing_ok=True)
    cmd = [
        str(tools["ginkgo"]),
        f"--procs={args.procs}",
        f"--timeout={args.timeout}",
        f"--seed={args.seed}",  # the same order on both sides
        "--no-color",
        "--silence-skips",
        f"--focus={args.focus}",
        f"--skip={args.skip}",
        f"--json-report={report}",
        str(tools["e2e.test"]),
        "--",
        f"--kubeconfig={kubeconfig}",
        "--provider=skeleton",
        f"--report-dir={out}",
        "--disable-log-dump",
        "--allowed-not-ready-nodes=0",
    ]
    log(f"{side}: {' '.join(cmd)}")
    t0 = time.monotonic()
    with (out / "ginkgo.log").open("w") as fh:
        # Its own process group: on Ctrl-C the e2e.test processes ginkgo started go too.
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # e2e.test processes left by ginkgo
    seconds = time.monotonic() - t0
    if not report.exists():
        tail = (out / "ginkgo.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{side}: no report (exit {rc}):\n{tail}")
    result = summarize(report, seconds)
    result["exit_code"] = rc
    log(
        f"{side}: {len(result['passed'])} passed, {len(result['failed'])} failed, "
        f"{result['skipped']} skipped in {seconds:.0f}s"
    )
    return result


#: The local vcluster's one pod (kwok runs it), so that a fake node exists.
ANCHOR_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "node-anchor", "namespace": "default"},
    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
}


#: The runtime handler the e2e suite's RuntimeClass specs use (kind's containerd has it).
PRECONFIGURED_HANDLER = "test-handler"


def offer_runtime_class(kubeconfig: Path, handler: str) -> None:
    """The host admin's part: a RuntimeClass named after the handler, which is where a vcluster's
    RuntimeClasses of that handler run (the host side's specs create their own)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.NodeV1Api(config.new_client_from_config(str(kubeconfig)))
    body = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass"}
    try:
        api.create_runtime_class(body | {"metadata": {"name": handler}, "handler": handler})
    except ApiException as exc:
        if exc.status != 409:
            raise


def earlier_host(path: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host side of an earlier run of the same suite: its result and where it came from.
    Refused when anything that decides which specs run differs."""
    old = json.loads(path.read_text())
    want = {
        "focus": args.focus,
        "skip": args.skip,
        "seed": args.seed,
        "k8s_version": str(parse_k8s_version(None)),
    }
    for key, value in want.items():
        if old.get(key) != value:
            raise SystemExit(f"--host-from {path}: {key} is {old.get(key)!r}, this run {value!r}")
    if "host" not in old:
        raise SystemExit(f"--host-from {path}: no host side in it")
    return old["host"], {"file": str(path.name), "when": old.get("when"), "procs": old.get("procs")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--focus", default=r"\[Conformance\]")
    ap.add_argument("--skip", default=SKIP)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1, help="ginkgo's spec order, both sides")
    ap.add_argument(
        "--timeout", default="4h", help="per side (ginkgo --timeout); unfinished specs count apart"
    )
    ap.add_argument("--sides", default="host,vcluster")
    ap.add_argument("--local", action="store_true", help="local vcluster on the local host")
    ap.add_argument("--keep-host", action="store_true", help="leave the kind host running")
    ap.add_argument(
        "--host-from",
        type=Path,
        default=None,
        help="take the host side from an earlier result (same version, focus, skip and seed; "
        "recorded as such) and run only the vcluster side",
    )
    ap.add_argument(
        "--vcluster-values",
        type=json.loads,
        default=HOST_LIKE_VALUES,
        help="chart values of the vcluster, as JSON (default: what the kind host admits, "
        "privileged pods and externalIPs, so those specs can run on both sides; '{}': the "
        "chart's own defaults)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    earlier = earlier_host(args.host_from, args) if args.host_from else None
    if earlier is not None:
        args.sides = "vcluster"
    os.environ.setdefault("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    k8s = parse_k8s_version(None)
    cache = default_cache_dir()
    out = args.out or RESULTS / ("conformance-local.json" if args.local else "conformance.json")
    work = cache / "conformance" / "runs" / time.strftime("%Y%m%d-%H%M%S")
    tools = ConformanceBuild(k8s, cache).build()
    result: dict[str, Any] = {
        "benchmark": "conformance",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "k8s_version": str(k8s),
        "host_kind": "local" if args.local else "kind",
        "focus": args.focus,
        "skip": args.skip,
        "procs": args.procs,
        "seed": args.seed,
        "timeout_per_side": args.timeout,
        "vcluster_values": args.vcluster_values,
    }
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.local:
        resolver = BinaryResolver(k8s, cache, download_base="off")
        binaries = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
        with LocalHost(k8s, binaries) as host:
            kubeconfigs = {"host": Path(host.info().kubeconfig)}
            with VCluster(host.info(), "conformance", timeout=120) as vc:
                # A vcluster shows the host nodes its pods run on (as upstream vcluster does
                # by default); the suite wants a schedulable node before it starts: one pod,
                # as the vcluster pod's own node is on kind.
                vc.apply(ANCHOR_POD)
                vc.wait_for("Pod", "node-anchor", "Ready", timeout=60)
                kubeconfigs["vcluster"] = vc.kubeconfig_path
                for side in sides:
                    result[side] = run_suite(side, kubeconfigs[side], tools, args, work / side)
    else:
        kind = KindSetup.prepare(k8s, cache)
        docker, images = kind.docker, kind.images
        busybox = sorted((cache / "kind-node").glob("rootfs-*/bin/busybox"))[-1]
        test_images = build_images(docker, cache, tools["agnhost"], busybox)
        host = kind.host(HOST)
        host.start()
        try:
            log(f"loading {len(test_images)} test images into the kind host")
            host.load_images(test_images)
            result["test_images"] = {
                ref: hashlib.sha256(ref.encode()).hexdigest()[:8] for ref in test_images
            }
            offer_runtime_class(host.kubeconfig_path, PRECONFIGURED_HANDLER)
            vc = VCluster(
                host.info(), "conformance", images=images, timeout=240, progress=log,
                values=args.vcluster_values,
            )  # fmt: skip
            vc.create()
            try:
                kubeconfigs = {"host": host.kubeconfig_path, "vcluster": vc.kubeconfig_path}
                for side in sides:
                    result[side] = run_suite(side, kubeconfigs[side], tools, args, work / side)
            finally:
                vc.delete()
        finally:
            if not args.keep_host:
                host.delete()
    if earlier is not None:
        result["host"], result["host_from"] = earlier
    if "host" in result and "vcluster" in result:
        # Compared where both sides ran a spec to its end (a time box may cut either).
        ran = lambda r: set(r["passed"]) | set(r["failed"])  # noqa: E731
        both = ran(result["host"]) & ran(result["vcluster"])
        host_passed = set(result["host"]["passed"]) & both
        vc_passed = set(result["vcluster"]["passed"]) & both
        result["compared_specs"] = len(both)
        result["vcluster_only_failures"] = sorted(host_passed - vc_passed)
        result["host_only_failures"] = sorted(vc_passed - host_passed)
        result["goal_host_passes_subset_of_vcluster"] = host_passed <= vc_passed
        result["goal_host_covers_150"] = len(host_passed) >= 150
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
