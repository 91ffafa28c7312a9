"""``pytest-vcluster`` command line: inspect and fill the binary cache, run a local host."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .binaries import LOCAL_HOST_TOOLS, TOOLS, BinaryResolver, default_cache_dir
from .errors import VClusterError
from .versions import parse_k8s_version


def _tools(value: str) -> list[str]:
    names = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in names if t not in TOOLS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}"
        )
    return names


def _push_target(value: str) -> str:
    from .images import push_target

    try:
        return push_target(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pytest-vcluster", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("binaries", help="show where each binary resolves; --build fills the cache")
    b.add_argument("--k8s-version", default=None, help="Kubernetes version (default: newest)")
    b.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    b.add_argument(
        "--tools",
        type=_tools,
        default=list(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)}",
    )
    b.add_argument(
        "--build",
        action="store_true",
        help="obtain (download, else Go build) every tool that does not resolve yet",
    )
    b.add_argument(
        "--force", action="store_true", help="with --build: rebuild into the cache from Go modules"
    )
    ls = sub.add_parser(
        "list", help="show running hosts, kept vclusters and vcluster namespaces on kind hosts"
    )
    ls.add_argument("--cache-dir", default=None)
    r = sub.add_parser(
        "reap",
        help="remove kept vclusters, idle hosts, stale work dirs and expired vcluster "
        "namespaces on kind/kubeconfig hosts",
    )
    r.add_argument("--cache-dir", default=None)
    r.add_argument(
        "--all",
        action="store_true",
        help="also stop hosts kept for reuse and delete every vcluster namespace on kind hosts",
    )
    d = sub.add_parser(
        "doctor",
        help="check this machine for each host (binaries, Docker, images, memory) and say "
        "how to fix what is missing; exit code 1 when the local host cannot start",
    )
    d.add_argument("--k8s-version", default=None)
    d.add_argument("--cache-dir", default=None)
    d.add_argument("--no-docker", action="store_true", help="skip Docker and the images")
    im = sub.add_parser(
        "images",
        help="the control-plane and syncer images of in-cluster vclusters: build (by recipe "
        "hash, skipped when Docker has them) or list",
    )
    im.add_argument("action", choices=("build", "list"))
    im.add_argument("--k8s-version", default=None)
    im.add_argument("--cache-dir", default=None)
    im.add_argument("--force", action="store_true", help="with build: build again")
    im.add_argument(
        "--push",
        type=_push_target,
        default=None,
        metavar="REGISTRY/PREFIX",
        help="with build: push both images to REGISTRY/PREFIX (docker login first where the "
        "registry wants it) and print the variables that name them",
    )
    h = sub.add_parser("local-host", help="run the embedded local host until Ctrl-C")
    h.add_argument("--k8s-version", default=None)
    h.add_argument("--cache-dir", default=None)
    h.add_argument("--nodes", type=int, default=1)
    return p


def _resolver(args: argparse.Namespace) -> BinaryResolver:
    cache = Path(args.cache_dir) if args.cache_dir else None
    return BinaryResolver(parse_k8s_version(args.k8s_version), cache)


def cmd_binaries(args: argparse.Namespace) -> int:
    resolver = _resolver(args)
    print(f"Kubernetes {resolver.k8s}; cache {resolver.cache_dir}")
    failed = 0
    for tool in args.tools:
        if args.build:
            try:
                r = resolver.resolve(tool, force_build=args.force)
            except VClusterError as exc:
                print(f"{tool:<24} ERROR {exc}")
                failed += 1
                continue
        else:
            found = resolver.lookup(tool)
            if found is None:
                print(
                    f"{tool:<24} {resolver.version_of(tool):<10} {'missing':<9} "
                    "(run with --build to obtain it)"
                )
                failed += 1
                continue
            r = found
        print(f"{tool:<24} {r.version:<10} {r.source:<9} {r.path}")
    return 1 if failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    resolver = _resolver(args)
    print(f"Kubernetes {resolver.k8s}; cache {resolver.cache_dir}; {doctor.environment_note()}")
    return doctor.report(doctor.diagnose(resolver, docker=not args.no_docker))


def cmd_images(args: argparse.Namespace) -> int:
    from . import images
    from .hosts.incluster.chart import CONTROL_PLANE_REPO, SYNCER_REPO

    k8s = str(parse_k8s_version(args.k8s_version))
    if args.push and args.action != "build":
        raise VClusterError("--push goes with `images build`")
    if args.action == "build" and args.push:
        # This checkout's images (names in the environment are someone else's: not pushed).
        built = images.build(k8s, _cache(args), print, force=args.force)
        from .docker import find_cli

        pushed = images.push(built, args.push, find_cli(), print)
        print("# the images in the registry, for runs on clusters that pull from it:")
        for key, ref in pushed.items():
            print(f"export {images.ENV[key]}={ref}")
        return 0
    if args.action == "build":
        found = images.ensure(k8s, _cache(args), print, force=args.force)
        for key, ref in found.items():
            print(f"{key:<13} {ref}")
        return 0
    from .docker import find_cli

    docker = find_cli()
    for repo in (CONTROL_PLANE_REPO, SYNCER_REPO):
        out = docker.out(
            ["images", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedSince}}", repo]
        )
        print(out or f"{repo}: none built")
    for key, ref in images.named().items():
        print(f"{key:<13} {ref} (named by {images.ENV[key]})")
    return 0


def cmd_local_host(args: argparse.Namespace) -> int:
    from .hosts.local import LocalHost

    resolver = _resolver(args)
    paths = {t: r.path for t, r in resolver.resolve_all(LOCAL_HOST_TOOLS).items()}
    with LocalHost(resolver.k8s, paths, nodes=args.nodes, progress=print) as host:
        print(f"export KUBECONFIG={host.kubeconfig_path}")
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


def _cache(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()


def cmd_list(args: argparse.Namespace) -> int:
    from .reaper import inventory

    items = inventory(_cache(args))
    for f in items:
        print(f"{f.kind:<9} {f.name:<24} {'running' if f.alive else 'dead':<8} {f.detail}")
    if not items:
        print("nothing running")
    return 0


def cmd_reap(args: argparse.Namespace) -> int:
    from .reaper import reap

    done = reap(_cache(args), hosts_too=args.all)
    for line in done:
        print(f"removed {line}")
    if not done:
        print("nothing to reap")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "binaries": cmd_binaries,
        "list": cmd_list,
        "reap": cmd_reap,
        "local-host": cmd_local_host,
        "doctor": cmd_doctor,
        "images": cmd_images,
    }
    try:
        return commands[args.command](args)
    except VClusterError as exc:
        print(f"pytest-vcluster: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
