"""test_chart_*.py helpers: chart values as the plugin makes them, ``helm template`` output."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from pytest_vcluster.hosts.incluster import CHART_DIR
from pytest_vcluster.hosts.incluster.chart import chart_values

IMAGES = {
    "controlPlane": "pytest-vcluster/control-plane:v1.37.2-abc",
    "syncer": "pytest-vcluster/syncer:def",
}


def values_for(
    cidr: str = "10.96.0.0/12",
    coredns_image: str = "",
    syncer_args: tuple[str, ...] = (),
    **user: Any,
) -> dict[str, Any]:
    """What the plugin hands ``helm install`` for vcluster vc1 (chart values)."""
    return chart_values(IMAGES, cidr, coredns_image, syncer_args, user)


def render(
    helm: Path, args: list[str], values: dict[str, Any] | None = None, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), "template", "vc1", str(CHART_DIR), "--namespace", "vcluster-vc1", *args]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        argv += ["--values", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def docs(helm: Path, pki_args: list[str], tmp: Path, **values: Any) -> dict[str, Any]:
    proc = render(helm, pki_args, values_for("10.96.0.0/16", **values), tmp)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for d in yaml.safe_load_all(proc.stdout):
        if d:
            out[f"{d['kind']}/{d['metadata']['name']}"] = d
    return out


def containers(objs: dict[str, Any]) -> dict[str, Any]:
    pod = objs["StatefulSet/vc1"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def syncer_args(objs: dict[str, Any]) -> list[str]:
    return list(containers(objs)["syncer"]["args"])
