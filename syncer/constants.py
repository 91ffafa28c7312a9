"""Constants of the syncer: the label and annotation keys it writes on host objects, pod phases."""

from __future__ import annotations

#: Every key the syncer owns lives under this prefix; virtual objects may not set such keys.
LABEL_PREFIX = "vc.pytest-vcluster.io"

#: Label: name of the virtual cluster that owns a host object.
MANAGED_BY_LABEL = f"{LABEL_PREFIX}/managed-by"
#: Label: virtual namespace of the object (scopes translated selectors to one namespace).
NAMESPACE_LABEL = f"{LABEL_PREFIX}/namespace"

#: Annotations: identity of the virtual twin, used to map back and to detect orphans.
OBJECT_NAME = f"{LABEL_PREFIX}/object-name"
OBJECT_NAMESPACE = f"{LABEL_PREFIX}/object-namespace"
OBJECT_UID = f"{LABEL_PREFIX}/object-uid"
OBJECT_KIND = f"{LABEL_PREFIX}/object-kind"

#: Pod phases after which nothing runs again.
ENDED_PHASES = ("Succeeded", "Failed")

#: The virtual API servers' --service-account-issuer (local runtime and chart alike).
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
