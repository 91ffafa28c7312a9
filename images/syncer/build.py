#!/usr/bin/env python3
"""Build the syncer image (``pytest_vcluster.recipes.syncer_image``: offline with debootstrap,
else ``docker build`` FROM python:3.11-slim; the same as ``pytest-vcluster images build``).

    nice -n 19 python images/syncer/build.py [--cache-dir DIR] [--base IMAGE] [--force]
        [--print-tag]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.recipes.syncer_image import SyncerImage, target_interpreter

__all__ = ["SyncerImage", "main", "target_interpreter"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    p.add_argument("--base", default=None, help="build FROM this CPython 3.11 image")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--print-tag", action="store_true", help="print the image tag and exit")
    args = p.parse_args(argv)
    image = SyncerImage(Path(args.cache_dir) if args.cache_dir else None, base=args.base)
    if args.print_tag:
        print(image.tag())
        return 0
    try:
        tag, built = image.build(force=args.force)
    except (VClusterError, subprocess.CalledProcessError) as exc:
        print(f"syncer: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"{tag} ({'built' if built else 'exists'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
