"""Reading pods, for both kinds of host: a problem that will not fix itself, a one-line summary,
and the tables a failed test's report shows (pure functions of API objects as dicts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..rest import RestClient

# Waiting reasons that never resolve without a change: fail the wait at once with them.
STUCK = ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerError")
NEVER = ("ErrImageNeverPull", "InvalidImageName")  # pullPolicy Never / a malformed reference


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """A reason that will not fix itself (image pull, crash loop, unschedulable), or None."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return f"{name}: Unschedulable: {cond.get('message', '')}"
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in STUCK or reason in NEVER or reason.startswith("CreateContainerConfigError"):
            return f"{name}/{cs.get('name')}: {reason}: {waiting.get('message', '')}".rstrip(": ")
    return None


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_summary(pod: Mapping[str, Any]) -> str:
    """``Running, control-plane=running ready=True, syncer=waiting/ErrImagePull ready=False``."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase", "?"))]
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        which = next(iter(state), "?")
        reason = (state.get(which) or {}).get("reason", "")
        parts.append(
            f"{cs.get('name')}={which}{'/' + reason if reason else ''} ready={cs.get('ready')}"
        )
    return ", ".join(parts)


def pods_table(pods: Iterable[Mapping[str, Any]]) -> str:
    """One line per pod: name (with its virtual name when synced), phase, why it waits."""
    rows = []
    for p in pods:
        meta, st = p["metadata"], p.get("status") or {}
        waiting = [
            ((c.get("state") or {}).get("waiting") or {}).get("reason")
            for c in st.get("containerStatuses") or []
        ]
        reason = next((w for w in waiting if w), "") or next(
            (c.get("reason", "") for c in st.get("conditions") or [] if c.get("reason")), ""
        )
        ann = meta.get("annotations") or {}
        virtual = ann.get("vc.pytest-vcluster.io/object-name")
        name = f"{meta.get('namespace')}/{meta['name']}"
        if virtual:
            name += f" <- {ann.get('vc.pytest-vcluster.io/object-namespace')}/{virtual}"
        node = (p.get("spec") or {}).get("nodeName") or ""
        rows.append(f"{name}  {st.get('phase', '?')}  {reason}  {node}".rstrip())
    return "\n".join(rows) or "(none)"


def events_table(events: Iterable[Mapping[str, Any]], last: int = 40) -> str:
    rows = [
        f"{e.get('type')} {e.get('reason')} "
        f"{(e.get('involvedObject') or {}).get('kind')}/"
        f"{(e.get('involvedObject') or {}).get('name')}: {e.get('message')}"
        for e in list(events)[-last:]
    ]
    return "\n".join(rows) or "(none)"


def rest_tables(rest: RestClient, side: str, namespace: str | None = None) -> dict[str, str]:
    """``{"<side> pods": table, "<side> events": table}`` read through ``rest`` (all
    namespaces, or one)."""
    base = f"/api/v1/namespaces/{namespace}" if namespace else "/api/v1"
    out = {}
    for what, table in (("pods", pods_table), ("events", events_table)):
        try:
            status, body = rest.get(f"{base}/{what}")
        except OSError as exc:
            out[f"{side} {what}"] = f"(could not list: {exc})"
            continue
        ok = status == 200 and isinstance(body, dict)
        out[f"{side} {what}"] = (
            table(body.get("items") or []) if ok else f"(could not list: {status})"
        )
    return out
