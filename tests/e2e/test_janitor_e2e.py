"""The janitor's CronJob (examples/ci/janitor.yaml) in a real cluster: applied as a user would,
one run of it deletes an expired vcluster namespace, pods and all, and leaves the rest."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_vcluster.hosts.kind import KindHost

pytestmark = pytest.mark.e2e
MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "ci" / "janitor.yaml"


def test_janitor_cronjob_deletes_expired_vcluster_namespaces(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    manifest = MANIFEST.read_text().replace(
        "pytest-vcluster/syncer:REPLACE-ME", vcluster_images["syncer"]
    )
    kind_host.load_images([vcluster_images["syncer"]])
    now = int(time.time())
    spaces = {"janitor-e2e-expired": now - 60, "janitor-e2e-alive": now + 3600}
    try:
        for name, expires in spaces.items():
            kind_host.kubectl_run("create", "namespace", name)
            kind_host.kubectl_run(
                "label", "namespace", name, "app.kubernetes.io/managed-by=pytest-vcluster",
                f"pytest-vcluster.io/expires={expires}",
            )  # fmt: skip
        kind_host.kubectl_run(
            "run", "sleeper", "-n", "janitor-e2e-expired", f"--image={vcluster_images['syncer']}",
            "--image-pull-policy=Never", "--command", "--", "sleep", "3600",
        )  # fmt: skip
        kind_host.kubectl_run("apply", "-f", "-", input=manifest)
        kind_host.kubectl_run(
            "create", "job", "--from=cronjob/janitor", "now", "-n", "pytest-vcluster-janitor"
        )
        kind_host.kubectl_run(
            "wait", "--for=condition=complete", "job/now", "-n", "pytest-vcluster-janitor",
            "--timeout=120s", timeout=130,
        )  # fmt: skip
        log = kind_host.kubectl_run("logs", "job/now", "-n", "pytest-vcluster-janitor").stdout
        assert "deleted namespace janitor-e2e-expired" in log
        assert "janitor-e2e-alive" not in log
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = kind_host.kubectl_run("get", "namespace", "janitor-e2e-expired", check=False)
            if left.returncode != 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the expired namespace is still there after 60 s")
        alive = kind_host.kubectl_json("get", "namespace", "janitor-e2e-alive")
        assert alive["status"]["phase"] == "Active"
    finally:
        kind_host.kubectl_run("delete", "-f", "-", "--wait=false", input=manifest, check=False)
        for name in spaces:
            kind_host.kubectl_run("delete", "namespace", name, "--wait=false", check=False)
