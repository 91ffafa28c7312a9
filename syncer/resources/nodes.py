"""Fake virtual nodes: one per host node that runs a synced pod, removed when none does.

The syncer holds only a namespaced Role on the host, so it cannot read host nodes: a fake node
is named after the host pod's ``spec.nodeName``, shows the host node's IP (from its pods'
``status.hostIP``) as InternalIP and is always Ready. The virtual controller-manager runs without
the node-lifecycle controller, so no heartbeats are needed.

Two addresses, two audiences: the InternalIP is the host node's, so a test that reaches a
NodePort or hostPort "on the node" reaches the real one; the kubelet API is the syncer's,
advertised as the node's ``Hostname`` address, which the virtual API server is told to prefer
(``--kubelet-preferred-address-types=Hostname``).
"""

from __future__ import annotations

import threading

from ..constants import MANAGED_BY_LABEL
from ..core.controller import Engine
from ..kube import JSON, ApiError, timestamp

FAKE_NODE_LABEL = "vc.pytest-vcluster.io/fake-node"
DECLARED_FEATURES = ("ExtendWebSocketsToKubelet",)


def fake_node(name: str, vcluster: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                FAKE_NODE_LABEL: "true",
                MANAGED_BY_LABEL: vcluster,
            },
        },
    }


def fake_node_status(
    kubelet: tuple[str, int] | None = None, version: str = "fake", node_ip: str = ""
) -> JSON:
    """Always Ready; with ``kubelet`` (IP, port) the node's kubelet API is the syncer's.
    ``version``: the kubelet version shown (the host's: the API server decides by it whether
    a kubelet speaks WebSocket streams itself or needs them translated to SPDY).
    ``node_ip``: the host node's IP, shown as InternalIP ("" while no pod on it reported it)."""
    now = timestamp()
    status: JSON = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "fake node of pytest-vcluster's syncer",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "capacity": {"cpu": "1k", "memory": "1Ti", "pods": "10k"},
        "allocatable": {"cpu": "1k", "memory": "1Ti", "pods": "10k"},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": version,
            "kubeProxyVersion": version,
            "containerRuntimeVersion": "fake",
            "bootID": "",
            "kernelVersion": "",
            "machineID": "",
            "osImage": "",
            "systemUUID": "",
        },
    }
    addresses = [{"type": "InternalIP", "address": node_ip}] if node_ip else []
    if kubelet is not None:
        addresses.append({"type": "Hostname", "address": kubelet[0]})
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": kubelet[1]}}
        # The syncer passes WebSocket streams through to the host API server, which translates
        # them for its kubelet if it must: so the virtual API server need not (it would, to
        # SPDY, for a node that does not declare this), and both answer alike.
        status["declaredFeatures"] = list(DECLARED_FEATURES)
    status["addresses"] = addresses
    return status


Shown = tuple[tuple[str, int] | None, str, tuple[str, ...], str]


def shown(node: JSON) -> Shown:
    """(kubelet endpoint, kubelet version, declared features, InternalIP) a fake node shows."""
    status = node.get("status") or {}
    version = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
    features = tuple(status.get("declaredFeatures") or ())
    return advertised(node), str(version), features, _address(status, "InternalIP")


def _address(status: JSON, kind: str) -> str:
    found = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == kind]
    return str(found[0]) if found else ""


def advertised(node: JSON) -> tuple[str, int] | None:
    """The kubelet endpoint a node's status advertises (None: none)."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    host = _address(status, "Hostname")
    if not port or not host:
        return None
    return host, int(port)


class Nodes:
    name = "nodes"

    def __init__(
        self,
        kubelet: tuple[str, int] | None = None,
        version: str = "fake",
        own: tuple[str, str] | None = None,
    ) -> None:
        """``own``: (host node, its IP) of this pod, shown as long as the syncer runs: CoreDNS
        runs in this pod (the chart's coredns.embedded), as it ran in a synced pod before."""
        self.kubelet = kubelet  # (IP, port) of the syncer's kubelet API, advertised by nodes
        self.version = version  # kubelet version the nodes show (the host's)
        # Host node of each synced host pod, and how many pods each node runs: kept by the host
        # pod handler so a reconcile does not scan every pod (that was O(pods) per event).
        self._node_of: dict[tuple[str, str], str] = {}
        self._pods_on: dict[str, int] = {}
        self._ip_of: dict[str, str] = {}  # host node -> its IP, as its pods report it
        self._own, own_ip = own or ("", "")
        if self._own:  # one pod more on it, never gone: this one
            self._pods_on[self._own] = 1
            self._ip_of[self._own] = own_ip
        self._lock = threading.Lock()

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        engine.watch_virtual("nodes", "/api/v1/nodes", label_selector=f"{FAKE_NODE_LABEL}=true")
        if self._own:
            engine.enqueue("nodes", "", self._own)
        host_pods = engine.host_informers.get("pods")
        if host_pods is not None:  # a pod moving on or off a node may change that node's fate
            host_pods.add_handler(self._on_host_pod)

    def pods_on(self, node: str) -> int:
        with self._lock:
            return self._pods_on.get(node, 0)

    def _on_host_pod(self, kind: str, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        node = "" if kind == "DELETED" else (pod.get("spec") or {}).get("nodeName") or ""
        ip = (pod.get("status") or {}).get("hostIP") or ""
        with self._lock:
            new_ip = bool(node and ip and node != self._own and self._ip_of.get(node) != ip)
            if new_ip:
                self._ip_of[node] = ip
            old = self._node_of.get(key, "")
            if old == node:
                if new_ip:
                    self.engine.enqueue("nodes", "", node)
                return
            if old:
                self._pods_on[old] -= 1
                if not self._pods_on[old]:
                    del self._pods_on[old]
                del self._node_of[key]
            if node:
                self._node_of[key] = node
                self._pods_on[node] = self._pods_on.get(node, 0) + 1
            changed = [n for n in (old, node) if n and self._pods_on.get(n, 0) <= 1]
            if new_ip and node not in changed:
                changed.append(node)
        for n in changed:  # only a node's first pod or its last one can change its fate
            self.engine.enqueue("nodes", "", n)

    def ensure(self, name: str) -> None:
        """Create the fake node ``name`` now (a pod is about to be bound to it)."""
        if self.engine.virtual_informers["nodes"].get("", name) is None:
            self._create(name)

    def _create(self, name: str) -> None:
        try:
            self.engine.virtual.create("/api/v1/nodes", fake_node(name, self.engine.settings.name))
        except ApiError as exc:
            if exc.status != 409:
                raise
        self._patch_status(name)
        self._untaint(name)

    def _untaint(self, name: str) -> None:
        """The API server taints every new node not-ready (TaintNodesByCondition); on a real
        cluster the node-lifecycle controller lifts it once the node is Ready, but a vcluster runs
        without that controller and its fake nodes are always Ready: lift it here."""
        self.engine.virtual.merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": None}})

    def node_ip(self, node: str) -> str:
        with self._lock:
            return self._ip_of.get(node, "")

    def _wanted(self, name: str) -> Shown:
        features = DECLARED_FEATURES if self.kubelet else ()
        return self.kubelet, self.version, features, self.node_ip(name)

    def _patch_status(self, name: str) -> None:
        status = fake_node_status(self.kubelet, self.version, self.node_ip(name))
        self.engine.virtual.merge_patch(f"/api/v1/nodes/{name}/status", {"status": status})

    def reconcile(self, namespace: str, name: str) -> None:
        host_pods = self.engine.host_informers.get("pods")
        if host_pods is not None and not host_pods.synced.is_set():
            # The counts are complete once the host pods are listed: a node must not look unused.
            self.engine.queue.add_after(("nodes", "", name), 0.1)
            return
        vnode = self.engine.virtual_informers["nodes"].get("", name)
        used = self.pods_on(name) > 0
        if used and vnode is None:
            self._create(name)
        elif used and vnode is not None:
            if shown(vnode) != self._wanted(name):
                # A restarted syncer may serve on another port; the node's IP comes with its pods.
                self._patch_status(name)
            if (vnode.get("spec") or {}).get("taints"):
                self._untaint(name)
        elif not used and vnode is not None:
            self.engine.virtual.delete(f"/api/v1/nodes/{name}", uid=vnode["metadata"].get("uid"))
