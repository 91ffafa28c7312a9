"""Ask a vcluster's syncer for a snapshot of the vcluster, or to return to it (``VCluster.reset``).

The request is an object in the vcluster that no admission webhook can refuse (see
``syncer/reset/plan.py``): the vcluster's own API and RBAC carry it on every host; the answer
comes back on the same object, watched.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from syncer.reset.plan import ANNOTATION, REQUEST_NAME

from .errors import VClusterError


class ResetError(VClusterError):
    """The syncer could not take the snapshot or do the reset (its message says why)."""


def ask(api_client: Any, action: str, vcluster: str, timeout: float = 60.0) -> dict[str, Any]:
    """Send ``action`` (snapshot|reset) and wait for the syncer's answer; its result."""
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    api = client.AdmissionregistrationV1Api(api_client)
    request = uuid.uuid4().hex
    annotations = {ANNOTATION + "action": action, ANNOTATION + "request": request}
    obj: Any
    try:
        try:
            obj = api.patch_validating_webhook_configuration(
                REQUEST_NAME, {"metadata": {"annotations": annotations}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            meta = client.V1ObjectMeta(name=REQUEST_NAME, annotations=annotations)
            obj = api.create_validating_webhook_configuration(
                client.V1ValidatingWebhookConfiguration(metadata=meta)
            )
    except ApiException as exc:
        refused = f"vcluster {vcluster}: {action} request refused: {exc.status} {exc.reason}"
        raise ResetError(refused) from None
    deadline = time.monotonic() + timeout
    rv = obj.metadata.resource_version
    while True:
        answer = _answer(obj, request)
        if answer is not None:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResetError(
                f"vcluster {vcluster}: no answer from its syncer to the {action} request within "
                f"{timeout:.0f}s (is its syncer this version's? see its log)"
            )
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            api.list_validating_webhook_configuration,
            field_selector=f"metadata.name={REQUEST_NAME}",
            resource_version=rv,
            timeout_seconds=max(1, int(left)),
            _request_timeout=left + 5,
        )
        for event in stream:
            obj = event["object"]
            rv = obj.metadata.resource_version
            if _answer(obj, request) is not None:
                break
    if answer.get("error"):
        raise ResetError(f"vcluster {vcluster}: {action}: {answer['error']}")
    result: dict[str, Any] = json.loads(answer.get("result") or "{}")
    return result


def _answer(obj: Any, request: str) -> dict[str, str] | None:
    ann = obj.metadata.annotations or {}
    data = {k[len(ANNOTATION) :]: v for k, v in ann.items() if k.startswith(ANNOTATION)}
    return data if data.get("done") == request else None
