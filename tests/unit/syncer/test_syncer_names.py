"""Host names, label keys and selectors (syncer.translate.names)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest

from syncer.constants import LABEL_PREFIX, MANAGED_BY_LABEL, NAMESPACE_LABEL
from syncer.translate.names import (
    collisions,
    host_name,
    host_name_for_cluster_scoped,
    translate_label_key,
    translate_label_selector,
    translate_label_selector_any,
    translate_labels,
    translate_selector,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
Matcher = Callable[..., bool]
SUFFIX = "-x-ns-x-vc"  # 10 characters


def sha(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@pytest.mark.parametrize("total", [1 + len(SUFFIX), 62, 63])
def test_host_name_fits_unchanged(total: int) -> None:
    name = "a" * (total - len(SUFFIX))
    assert host_name(name, "ns", "vc") == name + SUFFIX
    assert len(host_name(name, "ns", "vc")) == total


@pytest.mark.parametrize("total", [64, 65, 120, 253])
def test_host_name_truncates_with_hash_of_full_name(total: int) -> None:
    name = "b" * (total - len(SUFFIX))
    full = name + SUFFIX
    result = host_name(name, "ns", "vc")
    assert len(result) == 63
    assert result == full[:52] + "-" + sha(full, 10)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a" * 60 + "x", "a" * 60 + "y"),  # differ only after the kept prefix
        ("a" * 70, "a" * 71),  # differ only in length
    ],
)
def test_long_names_get_distinct_hashes(first: str, second: str) -> None:
    one, two = host_name(first, "ns", "vc"), host_name(second, "ns", "vc")
    assert one[:52] == two[:52]
    assert one != two
    assert len(one) == len(two) == 63


@pytest.mark.parametrize(
    ("name", "namespace", "vcluster"),
    [
        ("web", "default", "vc1"),
        ("a" * 51 + "-" + "b" * 20, "ns", "vc"),  # kept prefix ends in '-'
        ("a" * 50 + "--" + "b" * 20, "ns", "vc"),  # kept prefix ends in '--'
        ("a" * 63, "n" * 63, "v" * 20),
        ("z", "n" * 40, "v" * 40),  # cut inside the namespace
        ("x" * 40 + "-x", "ns", "v" * 30),  # cut right after a separator
    ],
)
def test_host_name_is_dns_label_for_label_inputs(name: str, namespace: str, vcluster: str) -> None:
    assert DNS_LABEL.match(host_name(name, namespace, vcluster))


@pytest.mark.parametrize(
    "name",
    [
        "a" * 51 + ".b" * 10,  # kept prefix ends in '.'
        "a" * 50 + ".-b" + "c" * 20,  # ... would end in '.-'
        "my.config",
    ],
)
def test_host_name_of_dotted_name_is_dns_subdomain(name: str) -> None:
    result = host_name(name, "ns", "vc")
    assert DNS_SUBDOMAIN.match(result)
    assert len(result) <= 63


def test_host_name_distinguishes_namespace_and_vcluster() -> None:
    names = {host_name("web", ns, vc) for ns in ("a", "b") for vc in ("v1", "v2")}
    assert len(names) == 4


@pytest.mark.parametrize(
    ("name", "vcluster", "expected"),
    [
        ("node-1", "vc", "node-1-x-vc"),
        ("n" * 58, "vc", "n" * 58 + "-x-vc"),  # exactly 63
        ("n" * 59, "vc", "n" * 52 + "-" + sha("n" * 59 + "-x-vc", 10)),  # 64
    ],
)
def test_host_name_for_cluster_scoped(name: str, vcluster: str, expected: str) -> None:
    assert host_name_for_cluster_scoped(name, vcluster) == expected
    assert DNS_LABEL.match(expected)


def hashed(key: str) -> str:
    return f"{LABEL_PREFIX}/h-{sha(key, 20)}"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("app", f"{LABEL_PREFIX}/app"),
        ("app.kubernetes.io/name", f"{LABEL_PREFIX}/app.kubernetes.io_name"),
        ("x/a_b", f"{LABEL_PREFIX}/x_a_b"),
        ("Tier.2", f"{LABEL_PREFIX}/Tier.2"),
        ("p/" + "n" * 61, f"{LABEL_PREFIX}/p_" + "n" * 61),  # part exactly 63
        ("p/" + "n" * 62, hashed("p/" + "n" * 62)),  # part 64
        ("example.com/" + "n" * 60, hashed("example.com/" + "n" * 60)),
        ("a_b", hashed("a_b")),  # would equal the image of "a/b"
        ("namespace", hashed("namespace")),  # would equal NAMESPACE_LABEL
        ("managed-by", hashed("managed-by")),  # would equal MANAGED_BY_LABEL
        ("-bad", hashed("-bad")),
        ("a/b/c", hashed("a/b/c")),
    ],
)
def test_translate_label_key(key: str, expected: str) -> None:
    assert translate_label_key(key) == expected


def test_translate_label_key_is_valid_and_injective() -> None:
    keys = ["a/b", "a_b", "a.b", "namespace", "managed-by", "x/namespace", "h", "n" * 63]
    keys += ["example.com/" + "n" * 60, "example.com/" + "n" * 61]
    results = [translate_label_key(k) for k in keys]
    assert len(set(results)) == len(keys)
    for result in results:
        prefix, name = result.split("/")
        assert prefix == LABEL_PREFIX
        assert LABEL_NAME.match(name)
    assert NAMESPACE_LABEL not in results
    assert MANAGED_BY_LABEL not in results


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, {}),
        ({"app": "web"}, {f"{LABEL_PREFIX}/app": "web"}),
        ({NAMESPACE_LABEL: "other", f"{LABEL_PREFIX}/x": "1"}, {}),  # spoofing dropped
        (
            {"namespace": "evil", "managed-by": "evil"},
            {hashed("namespace"): "evil", hashed("managed-by"): "evil"},
        ),
    ],
)
def test_translate_labels(labels: dict[str, str] | None, expected: dict[str, str]) -> None:
    result = translate_labels(labels, "team-a", "vc")
    assert result == expected | {NAMESPACE_LABEL: "team-a", MANAGED_BY_LABEL: "vc"}


@pytest.mark.parametrize(
    ("selector", "pod_labels", "pod_namespace", "selected"),
    [
        ({"app": "web"}, {"app": "web"}, "team-a", True),
        ({"app": "web"}, {"app": "web", "tier": "1"}, "team-a", True),
        ({"app": "web"}, {"app": "web"}, "team-b", False),
        ({"app": "web"}, {"app": "db"}, "team-a", False),
        ({}, {"anything": "x"}, "team-a", True),
        ({}, {"anything": "x"}, "team-b", False),
        ({"namespace": "team-b"}, {"namespace": "team-b"}, "team-a", True),
        ({"namespace": "team-b"}, {"namespace": "team-b"}, "team-b", False),
    ],
)
def test_translate_selector_is_scoped_to_namespace(
    matches: Matcher,
    selector: dict[str, str],
    pod_labels: dict[str, str],
    pod_namespace: str,
    selected: bool,
) -> None:
    host_selector = translate_selector(selector, "team-a")
    host_labels = translate_labels(pod_labels, pod_namespace, "vc")
    assert matches({"matchLabels": host_selector}, host_labels) is selected


def test_translate_selector_never_matches_host_only_pods(matches: Matcher) -> None:
    assert not matches({"matchLabels": translate_selector({}, "team-a")}, {"app": "web"})


EXPR: dict[str, Any] = {
    "matchLabels": {"app": "web"},
    "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "back"]},
        {"key": "canary", "operator": "DoesNotExist"},
    ],
}


@pytest.mark.parametrize(
    ("selector", "pod_labels", "pod_namespace", "selected"),
    [
        (EXPR, {"app": "web", "tier": "front"}, "team-a", True),
        (EXPR, {"app": "web", "tier": "front"}, "team-b", False),
        (EXPR, {"app": "web", "tier": "middle"}, "team-a", False),
        (EXPR, {"app": "web", "tier": "back", "canary": "1"}, "team-a", False),
        ({}, {"app": "web"}, "team-a", True),
        ({}, {}, "team-b", False),
        (None, {"app": "web"}, "team-a", False),
    ],
)
def test_translate_label_selector(
    matches: Matcher,
    selector: dict[str, Any] | None,
    pod_labels: dict[str, str],
    pod_namespace: str,
    selected: bool,
) -> None:
    host_selector = translate_label_selector(selector, "team-a")
    assert matches(host_selector, translate_labels(pod_labels, pod_namespace, "vc")) is selected
    # The virtual selector, evaluated virtually, agrees within its own namespace.
    if pod_namespace == "team-a":
        assert matches(selector, pod_labels) is selected


def test_translate_label_selector_keeps_none_and_leaves_input_alone() -> None:
    assert translate_label_selector(None, "team-a") is None
    original = {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    result = translate_label_selector(original, "team-a")
    assert original == {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    assert result == {
        "matchLabels": {NAMESPACE_LABEL: "team-a"},
        "matchExpressions": [{"key": f"{LABEL_PREFIX}/tier", "operator": "Exists"}],
    }


@pytest.mark.parametrize(
    ("namespaces", "pod_namespace", "selected"),
    [
        (["a", "b"], "a", True),
        (["a", "b"], "b", True),
        (["a", "b"], "c", False),
        (None, "c", True),
    ],
)
def test_translate_label_selector_any(
    matches: Matcher, namespaces: list[str] | None, pod_namespace: str, selected: bool
) -> None:
    host_selector = translate_label_selector_any({"matchLabels": {"app": "web"}}, namespaces)
    host_labels = translate_labels({"app": "web"}, pod_namespace, "vc")
    assert matches(host_selector, host_labels) is selected
    assert not matches(host_selector, {"app": "web"})  # host-only pod


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([("web", "a"), ("web", "b")], {}),
        ([("web", "a"), ("web", "a")], {}),  # the same object twice is no collision
        (
            [("a-x-b", "c"), ("a", "b-x-c"), ("other", "c")],
            {"a-x-b-x-c-x-vc": [("a-x-b", "c"), ("a", "b-x-c")]},
        ),
    ],
)
def test_collisions(
    objects: list[tuple[str, str]], expected: dict[str, list[tuple[str, str]]]
) -> None:
    assert collisions(objects, "vc") == expected


def test_collisions_of_truncated_names_are_only_real_ones() -> None:
    names = [("n" * 60 + str(i), "ns") for i in range(10)]
    assert collisions(names, "vc") == {}
