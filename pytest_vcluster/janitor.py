"""The janitor: deletes expired vcluster namespaces from inside a shared host cluster.

A CI runner that dies (SIGKILL, a lost machine) never runs its teardown, and ``pytest-vcluster
reap`` runs only where someone starts it. Every vcluster namespace carries the run id and an
expiry time (``pytest-vcluster.io/expires``, epoch seconds); the janitor,
run in the host cluster as a CronJob (``examples/ci/janitor.yaml``), deletes every namespace
past its expiry — release, pods (at once, grace 0), claims and synced objects with it.

    python -m pytest_vcluster.janitor [--kubeconfig FILE] [--dry-run]

In-cluster credentials when no kubeconfig is given. Needs only ``kubernetes`` (it runs in the
syncer's image).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .naming import EXPIRES_LABEL

MANAGED = "app.kubernetes.io/managed-by=pytest-vcluster"


def expiry(namespace: Mapping[str, Any]) -> float | None:
    """The namespace's expiry time, or None when it has none (never deleted: not ours to age)."""
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    try:
        return float(labels[EXPIRES_LABEL])
    except (KeyError, ValueError):
        return None


def expired(namespaces: Iterable[Mapping[str, Any]], now: float) -> list[str]:
    """Names of the namespaces to delete: past their expiry and not already going."""
    out = []
    for ns in namespaces:
        when = expiry(ns)
        terminating = (ns.get("status") or {}).get("phase") == "Terminating"
        if when is not None and when <= now and not terminating:
            out.append(str(ns["metadata"]["name"]))
    return sorted(out)


def sweep(core: Any, now: float | None = None, dry_run: bool = False) -> list[str]:
    """Delete the expired vcluster namespaces ``core`` (a ``CoreV1Api``) sees; their names."""
    from kubernetes.client.exceptions import ApiException

    listing = core.list_namespace(label_selector=MANAGED, _request_timeout=30)
    items = [core.api_client.sanitize_for_serialization(ns) for ns in listing.items]
    names = expired(items, time.time() if now is None else now)
    if dry_run:
        return names
    done = []
    for name in names:
        try:
            core.delete_namespace(name, propagation_policy="Background", _request_timeout=30)
            # The namespace controller waits for each pod's grace period: end them now.
            core.delete_collection_namespaced_pod(name, grace_period_seconds=0, _request_timeout=30)
        except ApiException as exc:
            if exc.status != 404:  # gone meanwhile (its run ended after all): fine
                raise
        done.append(name)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pytest_vcluster.janitor", description=__doc__)
    ap.add_argument("--kubeconfig", default=None, help="default: in-cluster credentials")
    ap.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    args = ap.parse_args(argv)
    from kubernetes import client, config

    if args.kubeconfig:
        api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    with api:
        names = sweep(client.CoreV1Api(api), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for name in names:
        print(f"{verb} namespace {name}")
    print(f"{len(names)} expired vcluster namespace(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
