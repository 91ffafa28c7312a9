"""Kubelet paths of the fake nodes → host pod subresources (pure translation)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from syncer.kubelet.routes import RouteError, host_query, route, virtual_message
from syncer.translate.names import host_name

NS = "vcluster-vc1"


def _route(target: str):  # type: ignore[no-untyped-def]
    return route(target, vcluster="vc1", host_namespace=NS)


def _split(target: str) -> tuple[str, list[tuple[str, str]]]:
    url = urlsplit(target)
    return url.path, parse_qsl(url.query, keep_blank_values=True)


@pytest.mark.parametrize(
    ("target", "verb", "subresource", "query"),
    [
        (
            "/containerLogs/default/web/nginx?follow=true&tailLines=10&timestamps=true",
            "containerLogs",
            "log",
            [
                ("container", "nginx"),
                ("follow", "true"),
                ("tailLines", "10"),
                ("timestamps", "true"),
            ],
        ),
        (
            "/containerLogs/team-a/job/main?previous=true&sinceSeconds=5&limitBytes=100&stream=Stderr",
            "containerLogs",
            "log",
            [
                ("container", "main"),
                ("previous", "true"),
                ("sinceSeconds", "5"),
                ("limitBytes", "100"),
                ("stream", "Stderr"),
            ],
        ),
        (
            "/exec/default/web/nginx?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1",
            "exec",
            "exec",
            [
                ("container", "nginx"),
                ("command", "sh"),
                ("command", "-c"),
                ("command", "echo hi"),
                ("stdin", "true"),
                ("stdout", "true"),
                ("tty", "true"),
            ],
        ),
        (  # the kubelet's form with the pod UID; error=0 means no stderr
            "/exec/default/web/0b5c-uid/nginx?command=true&output=1&error=0",
            "exec",
            "exec",
            [("container", "nginx"), ("command", "true"), ("stdout", "true")],
        ),
        (
            "/attach/default/web/nginx?input=1&output=1&error=1",
            "attach",
            "attach",
            [("container", "nginx"), ("stdin", "true"), ("stdout", "true"), ("stderr", "true")],
        ),
        (
            "/portForward/default/web?port=80&port=8080",
            "portForward",
            "portforward",
            [("ports", "80"), ("ports", "8080")],
        ),
        ("/portForward/default/web", "portForward", "portforward", []),
        ("/portForward/default/web/0b5c-uid", "portForward", "portforward", []),
    ],
)
def test_route(target: str, verb: str, subresource: str, query: list[tuple[str, str]]) -> None:
    r = _route(target)
    ns, pod = target.split("/")[2:4]
    pod = pod.split("?")[0]
    assert (r.verb, r.namespace, r.pod) == (verb, ns, pod)
    assert r.host_pod == host_name(pod, ns, "vc1")
    path, got = _split(r.host_target)
    assert path == f"/api/v1/namespaces/{NS}/pods/{r.host_pod}/{subresource}"
    assert got == query
    assert r.streaming == (verb != "containerLogs")


def test_long_names_are_translated_like_the_pods() -> None:
    pod = "p" * 60
    r = _route(f"/containerLogs/some-namespace/{pod}/c")
    assert r.host_pod == host_name(pod, "some-namespace", "vc1")
    assert len(r.host_pod) == 63


@pytest.mark.parametrize("path", ["/stats/summary", "/metrics/cadvisor", "/pods", "/healthz"])
def test_node_level_paths_are_a_clear_404(path: str) -> None:
    with pytest.raises(RouteError) as err:
        _route(path)
    assert err.value.status == 404
    assert "not served by the vcluster's fake nodes" in err.value.message


@pytest.mark.parametrize(
    "path", ["/", "/exec/default", "/containerLogs/default/web", "/run/default/web/c", "/x/../exec"]
)
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(RouteError) as err:
        _route(path)
    assert err.value.status == 404


def test_query_container_parameter_cannot_override_the_path() -> None:
    assert host_query("exec", [("container", "other"), ("command", "ls")], "main") == [
        ("container", "main"),
        ("command", "ls"),
    ]


def test_virtual_message_names_the_virtual_pod() -> None:
    r = _route("/exec/default/web/nginx?command=ls")
    host_text = f'pods "{r.host_pod}" not found in namespace "{NS}"'
    assert virtual_message(host_text, r) == 'pods "web" not found in namespace "default"'
