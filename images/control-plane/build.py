#!/usr/bin/env python3
"""Build the vcluster control-plane image (``pytest_vcluster.recipes.control_plane``: FROM
scratch + static binaries, offline; the same as ``pytest-vcluster images build``).

    nice -n 19 python images/control-plane/build.py [--k8s-version 1.37] [--cache-dir DIR]
        [--force] [--print-tag]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.recipes.control_plane import ControlPlaneImage
from pytest_vcluster.versions import parse_k8s_version

__all__ = ["ControlPlaneImage", "main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--k8s-version", default=None, help="Kubernetes version (default: newest)")
    p.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--print-tag", action="store_true", help="print the image tag and exit")
    args = p.parse_args(argv)
    image = ControlPlaneImage(
        parse_k8s_version(args.k8s_version), Path(args.cache_dir) if args.cache_dir else None
    )
    try:
        if args.print_tag:
            print(image.tag())
            return 0
        tag, built = image.build(force=args.force)
    except (VClusterError, subprocess.CalledProcessError) as exc:
        print(f"control-plane: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"{tag} ({'built' if built else 'exists'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
