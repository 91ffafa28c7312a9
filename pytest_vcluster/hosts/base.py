"""What a vcluster needs to know about its host, as plain data that crosses processes.

The local host runs in a supervisor process shared by all xdist workers; each worker gets a
``HostInfo`` (from the supervisor's state file) and starts its own vclusters with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..rest import Credentials, RestClient

if TYPE_CHECKING:
    from ..pki import CertificateAuthority


@dataclass(frozen=True)
class HostInfo:
    kind: str
    k8s_version: str
    server: str
    kubeconfig: str
    etcd_url: str
    pki_dir: str  # ca.crt, ca.key, admin.crt, admin.key of the host's control plane
    workdir: str  # vclusters keep their files under <workdir>/vclusters/<name>
    binaries: dict[str, str] = field(default_factory=dict)
    supervisor_pid: int = 0

    def rest(self) -> RestClient:
        d = Path(self.pki_dir)
        return RestClient(Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key"))

    def ca(self) -> CertificateAuthority:
        from ..pki import CertificateAuthority  # cryptography is slow to import

        d = Path(self.pki_dir)
        return CertificateAuthority.load((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes())

    def binary_paths(self) -> dict[str, Path]:
        return {k: Path(v) for k, v in self.binaries.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> HostInfo:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)
