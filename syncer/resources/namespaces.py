"""Each virtual namespace's ``default`` ServiceAccount, from the moment the namespace exists.

kube-controller-manager's ServiceAccount controller makes it, but in a vcluster that has just
become ready that controller is still starting (it polls the API server's /healthz each second,
then lists its informers: ~1.7 s after the local vcluster is ready), and meanwhile a pod in a
new namespace is refused by ServiceAccount admission. The syncer creates the missing account at
once; the controller adopts it (it only ever creates what is missing).
"""

from __future__ import annotations

import logging

from ..core.controller import Engine
from ..core.informer import Informer
from ..kube import ApiError

log = logging.getLogger(__name__)


def accounts_cache(engine: Engine) -> Informer:
    """The virtual ServiceAccounts informer, made once for whoever asks first."""
    found = engine.virtual_informers.get("serviceaccounts")
    return found or engine.cache_virtual("serviceaccounts", "/api/v1/serviceaccounts")


class DefaultServiceAccounts:
    name = "namespaces"

    def setup(self, engine: Engine) -> None:
        self.engine = engine
        self.namespaces = engine.watch_virtual("namespaces", "/api/v1/namespaces")
        self.accounts = accounts_cache(engine)

    def reconcile(self, namespace: str, name: str) -> None:
        ns = self.namespaces.get("", name)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp"):
            return
        if self.accounts.get(name, "default") is not None:
            return
        try:
            self.engine.virtual.create(
                f"/api/v1/namespaces/{name}/serviceaccounts", {"metadata": {"name": "default"}}
            )
        except ApiError as exc:
            # 409: the controller was first; 403/404: the namespace is going or gone.
            if exc.status not in (403, 404, 409):
                raise
