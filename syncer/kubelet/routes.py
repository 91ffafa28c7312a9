"""Kubelet API paths of a fake node → the host API server's pod subresources (pure).

The virtual kube-apiserver calls a node's kubelet with the paths below (after it has applied the
vcluster's RBAC to the user: ``pods/log``, ``pods/exec``, ``pods/attach``, ``pods/portforward``).
The syncer answers for every fake node by asking the host API server for the same subresource
of the translated host pod, with the kubelet's query parameters turned back into the API's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..translate.names import host_name

# kubelet query → API query of pods/exec and pods/attach (the API server translates the other
# way round: ExecOptions.Stdin becomes "input", and so on).
_STREAM_FLAGS = {"input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty"}
_SEGMENT = r"[^/]+"
_PATTERNS = {
    "containerLogs": re.compile(rf"^/containerLogs/({_SEGMENT})/({_SEGMENT})/({_SEGMENT})$"),
    # exec/attach have an optional pod UID before the container (kubelet's /{uid}/ form).
    "exec": re.compile(rf"^/exec/({_SEGMENT})/({_SEGMENT})(?:/({_SEGMENT}))?/({_SEGMENT})$"),
    "attach": re.compile(rf"^/attach/({_SEGMENT})/({_SEGMENT})(?:/({_SEGMENT}))?/({_SEGMENT})$"),
    "portForward": re.compile(rf"^/portForward/({_SEGMENT})/({_SEGMENT})(?:/({_SEGMENT}))?$"),
}
_SUBRESOURCE = {
    "containerLogs": "log",
    "exec": "exec",
    "attach": "attach",
    "portForward": "portforward",
}


class RouteError(Exception):
    """A kubelet request the syncer does not serve: HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    verb: str  # containerLogs, exec, attach, portForward
    namespace: str  # virtual
    pod: str  # virtual
    container: str  # "" for portForward
    host_namespace: str
    host_pod: str
    host_target: str  # path and query on the host API server

    @property
    def streaming(self) -> bool:
        """Whether the call upgrades the connection (SPDY or WebSocket)."""
        return self.verb != "containerLogs"


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "t", "yes", "y")


def host_query(verb: str, query: list[tuple[str, str]], container: str) -> list[tuple[str, str]]:
    """The host API's query for a kubelet query (order kept: ``command`` repeats in order)."""
    out: list[tuple[str, str]] = []
    if container:
        out.append(("container", container))
    for key, value in query:
        if verb in ("exec", "attach") and key in _STREAM_FLAGS:
            if _truthy(value):
                out.append((_STREAM_FLAGS[key], "true"))
        elif verb == "portForward" and key == "port":
            out.append(("ports", value))
        elif key == "container":
            continue  # the path names it
        else:  # follow, previous, tailLines, sinceSeconds, sinceTime, timestamps, limitBytes,
            out.append((key, value))  # stream, command: same names in both APIs
    return out


def route(target: str, *, vcluster: str, host_namespace: str) -> Route:
    """Map a kubelet request target (path and query) to the host pod's subresource."""
    url = urlsplit(target)
    path = url.path
    for verb, pattern in _PATTERNS.items():
        m = pattern.match(path)
        if m is None:
            continue
        groups = m.groups()
        namespace, pod = groups[0], groups[1]
        container = groups[-1] if verb != "portForward" else ""
        host_pod = host_name(pod, namespace, vcluster)
        query = host_query(verb, parse_qsl(url.query, keep_blank_values=True), container)
        host_path = (
            f"/api/v1/namespaces/{quote(host_namespace)}/pods/{quote(host_pod)}/"
            f"{_SUBRESOURCE[verb]}"
        )
        return Route(
            verb=verb,
            namespace=namespace,
            pod=pod,
            container=container,
            host_namespace=host_namespace,
            host_pod=host_pod,
            host_target=host_path + ("?" + urlencode(query) if query else ""),
        )
    first = path.strip("/").split("/", 1)[0]
    if first in ("stats", "metrics", "pods", "spec", "runningpods", "configz", "healthz"):
        raise RouteError(
            404,
            f"/{first} is not served by the vcluster's fake nodes: the syncer may read only its "
            "own host namespace, not the host node's kubelet",
        )
    raise RouteError(404, f"{path} is not a kubelet path the vcluster's fake nodes serve")


def virtual_message(message: str, r: Route) -> str:
    """A host error message with the host pod's names turned back into the virtual ones."""
    return message.replace(r.host_pod, r.pod).replace(
        f'namespace "{r.host_namespace}"', f'namespace "{r.namespace}"'
    )
