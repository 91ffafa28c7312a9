"""Projected clusterTrustBundle sources resolved against the vcluster's bundles
(syncer.translate.trust_bundles), as the kubelet's clustertrustbundle manager does."""

from __future__ import annotations

from typing import Any

import pytest
from pod_helpers import CTX, pod

from pytest_vcluster.pki import CertificateAuthority
from syncer.translate.pods import translate_pod
from syncer.translate.selectors import selects
from syncer.translate.trust_bundles import (
    BundleSpec,
    anchors,
    bundle_data,
    bundle_specs,
)

A = CertificateAuthority("a").pair.cert_pem.decode()
B = CertificateAuthority("b").pair.cert_pem.decode()


def ctb(name: str, pem: str, signer: str | None = None, **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"trustBundle": pem}
    if signer:
        spec["signerName"] = signer
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def volume(*sources: dict[str, Any]) -> dict[str, Any]:
    return {"name": "ctbs", "projected": {"sources": list(sources)}}


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        (None, {"a": "1"}, False),  # no selector: nothing
        ({}, {}, True),  # empty selector: everything
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]},
         {"a": "3"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ],
)  # fmt: skip
def test_label_selectors(
    selector: dict[str, Any] | None, labels: dict[str, str], selected: bool
) -> None:
    assert selects(selector, labels) is selected


def test_certificates_are_deduplicated_across_bundles() -> None:
    out = anchors([ctb("x", A + B), ctb("y", "junk before\n" + A)]).decode()
    assert out.count("-----BEGIN CERTIFICATE-----") == 2
    assert sorted(out.split("-----END CERTIFICATE-----\n")[:2]) == sorted(
        [A.split("-----END CERTIFICATE-----")[0], B.split("-----END CERTIFICATE-----")[0]]
    )


def test_by_name_by_signer_and_missing() -> None:
    bundles = [
        ctb("one", A),
        ctb("s:a", A, signer="example.com/s", team="x"),
        ctb("s:b", B, signer="example.com/s", team="y"),
    ]
    assert bundle_data(bundles, BundleSpec("k", name="one")) == anchors([bundles[0]])
    every = BundleSpec("k", signer="example.com/s", selector={}, has_selector=True)
    assert bundle_data(bundles, every) == anchors(bundles[1:])
    team = BundleSpec("k", signer="example.com/s", selector={"matchLabels": {"team": "y"}},
                      has_selector=True)  # fmt: skip
    assert bundle_data(bundles, team) == anchors([bundles[2]])
    assert bundle_data(bundles, BundleSpec("k", signer="example.com/s")) is None  # no selector
    assert bundle_data(bundles, BundleSpec("k", name="nope")) is None  # the pod waits
    assert bundle_data(bundles, BundleSpec("k", name="nope", optional=True)) == b""


def test_host_pod_mounts_the_bundle_from_its_token_secret() -> None:
    source = {"clusterTrustBundle": {"name": "one", "path": "ca.pem"}}
    vpod = pod(volumes=[volume({"configMap": {"name": "cm"}}, source)])
    (spec,) = bundle_specs(vpod)
    assert (spec.key, spec.name) == ("ctb.ctbs.1", "one")
    host = translate_pod(vpod, CTX)
    (vol,) = [v for v in host["spec"]["volumes"] if v["name"] == "ctbs"]
    assert vol["projected"]["sources"][1] == {
        "secret": {
            "name": CTX.service_account_secret,
            "items": [{"key": "ctb.ctbs.1", "path": "ca.pem"}],
        }
    }
