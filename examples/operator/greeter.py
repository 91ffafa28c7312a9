"""A tiny operator, the kind of code you would test in a vcluster: for every ``Greeting`` it
keeps a ConfigMap holding the message (owned by the Greeting) and reports ``status.ready``;
deleting the Greeting deletes the ConfigMap."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, watch

GROUP, VERSION, PLURAL = "example.com", "v1", "greetings"
LABEL = "example.com/greeting"

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "greeting", "kind": "Greeting"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["message"],
                                "properties": {"message": {"type": "string", "minLength": 1}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"ready": {"type": "boolean"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def reconcile(api: client.ApiClient, greeting: dict[str, Any]) -> None:
    meta = greeting["metadata"]
    ns, name = meta["namespace"], meta["name"]
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=f"greeting-{name}",
            labels={LABEL: name},
            owner_references=[
                client.V1OwnerReference(
                    api_version=f"{GROUP}/{VERSION}",
                    kind="Greeting",
                    name=name,
                    uid=meta["uid"],
                    controller=True,
                    block_owner_deletion=True,
                )
            ],
        ),
        data={"message": greeting["spec"]["message"]},
    )
    core = client.CoreV1Api(api)
    try:
        core.replace_namespaced_config_map(cm.metadata.name, ns, cm)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(ns, cm)
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, {"status": {"ready": True}}
    )


def forget(api: client.ApiClient, greeting: dict[str, Any]) -> None:
    # The owner reference would let the garbage collector do this too, but it notices a new
    # CRD only on its next discovery resync (up to 30 s): clean up at once.
    meta = greeting["metadata"]
    try:
        client.CoreV1Api(api).delete_namespaced_config_map(
            f"greeting-{meta['name']}", meta["namespace"]
        )
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def collect_orphans(api: client.ApiClient, greetings: list[dict[str, Any]]) -> None:
    """ConfigMaps whose Greeting went away while we were not watching (a restart, a 410)."""
    live = {(g["metadata"]["namespace"], g["metadata"]["name"]) for g in greetings}
    core = client.CoreV1Api(api)
    for cm in core.list_config_map_for_all_namespaces(label_selector=LABEL).items:
        if (cm.metadata.namespace, cm.metadata.labels[LABEL]) not in live:
            forget(
                api,
                {
                    "metadata": {
                        "namespace": cm.metadata.namespace,
                        "name": cm.metadata.labels[LABEL],
                    }
                },
            )


class Operator(threading.Thread):
    """Watches Greetings in every namespace until ``stop()``."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        version = ""  # list, then watch from the list's resourceVersion: no event is missed
        while not self.stopped.is_set():
            try:
                if not version:
                    listing = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                    for item in listing["items"]:
                        reconcile(self.api, item)
                    collect_orphans(self.api, listing["items"])
                    version = listing["metadata"]["resourceVersion"]
                for event in watch.Watch().stream(
                    objects.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=1,
                ):
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        reconcile(self.api, event["object"])
                    elif event["type"] == "DELETED":
                        forget(self.api, event["object"])
                    if self.stopped.is_set():
                        return
            except client.ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    version = ""
                elif exc.status != 404:  # 404: the CRD is not served yet
                    self.errors.append(exc)
                self.stopped.wait(0.2)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
