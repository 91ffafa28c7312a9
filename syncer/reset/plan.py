"""What a reset writes to the vcluster's etcd keys, from a snapshot and the keys now (pure).

Keys are compared relative to the API server's etcd prefix (``pods/default/web``). A key made
since the snapshot is deleted; a snapshot key changed or deleted since is put back — except
live state, which the control plane keeps writing on its own and must not be wound back
(leases, events and their etcd TTLs, pods and nodes with their status, endpoints, API
services' and flow control's status): those are only deleted when new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: The object through which the plugin asks the syncer for a snapshot or a reset, and gets the
#: answer: a ValidatingWebhookConfiguration without webhooks (it configures nothing). That kind
#: because the API server exempts webhook configurations from admission webhooks and policies
#: (so they cannot lock themselves out): a test's webhook that refuses every write cannot stop
#: the reset that removes it.
REQUEST_NAME = "pytest-vcluster-reset"
REQUEST_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
ANNOTATION = "reset.pytest-vcluster.io/"  # + action, request, done, result, error
RESERVED = frozenset({f"validatingwebhookconfigurations/{REQUEST_NAME}"})
#: Where the snapshot itself is kept, under the vcluster's prefix (so it survives a syncer
#: restart and goes with the vcluster's keys) but outside any resource's keys.
SNAPSHOT_DIR = "pytest-vcluster-snapshot/"

LIVE = (
    "leases/",
    "masterleases/",
    "events/",
    "pods/",
    "minions/",
    "services/endpoints/",
    "endpointslices/",
    "apiregistration.k8s.io/apiservices/",
    "flowschemas/",
    "prioritylevelconfigurations/",
)

#: Where the API server stores a resource, when not under its plural.
_STORED_AS = {
    "services": "services/specs/",
    "endpoints": "services/endpoints/",
    "nodes": "minions/",
    "ingresses": "ingress/",
}


@dataclass(frozen=True)
class Entry:
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class ResetPlan:
    deletes: list[str] = field(default_factory=list)  # relative keys
    puts: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return [*self.deletes, *(k for k, _ in self.puts)]

    def __bool__(self) -> bool:
        return bool(self.deletes or self.puts)


def encode(entry: Entry) -> bytes:
    """A snapshot entry as stored: its revision (8 bytes, big-endian), then its value."""
    return entry.mod_revision.to_bytes(8, "big") + entry.value


def decode(stored: bytes) -> Entry:
    return Entry(stored[8:], int.from_bytes(stored[:8], "big"))


def plan(snapshot: Mapping[str, Entry], now: Mapping[str, Entry]) -> ResetPlan:
    """The writes that bring ``now`` back to ``snapshot`` (relative keys; the stored snapshot's
    own keys are not among them)."""
    deletes = sorted(
        k for k in now if k not in snapshot and k not in RESERVED and not k.startswith(SNAPSHOT_DIR)
    )
    puts = sorted(
        (k, entry.value)
        for k, entry in snapshot.items()
        if k not in RESERVED
        and not k.startswith(LIVE)
        and (k not in now or now[k].mod_revision != entry.mod_revision)
    )
    return ResetPlan(deletes, puts)


def stored_under(path: str) -> str:
    """The relative etcd prefix of a built-in resource listed at ``path`` (an informer's:
    ``/api/v1/pods``, ``/apis/networking.k8s.io/v1/ingresses``)."""
    plural = path.rstrip("/").rsplit("/", 1)[-1]
    return _STORED_AS.get(plural, plural + "/")


def touched(prefixes: Mapping[str, str], keys: Iterable[str]) -> set[str]:
    """The names (of ``prefixes``: name → relative prefix) under which some key lies."""
    keys = list(keys)
    return {name for name, prefix in prefixes.items() if any(k.startswith(prefix) for k in keys)}
