"""Whether a virtual pod would expose the host: the Pod Security Standard "baseline", checked by
the syncer itself (pure). The plugin also labels host namespaces for the host's own Pod Security
admission; a chart installed with plain ``helm`` into an unlabelled namespace has only this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .pod_refs import containers

#: Capabilities the Pod Security Standard "baseline" allows in capabilities.add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: SELinux types baseline allows (user and role may not be set at all).
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
#: The "safe" sysctls baseline allows.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _context_violations(who: str, context: Mapping[str, Any]) -> list[str]:
    """What baseline refuses in a pod's or a container's securityContext."""
    out = []
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        out.append(f"{who}: hostProcess")
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append(f"{who}: seccomp Unconfined")
    if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
        out.append(f"{who}: AppArmor Unconfined")
    selinux = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        out.append(f"{who}: SELinux type {selinux['type']}")
    out += [f"{who}: SELinux {key}" for key in ("user", "role") if selinux.get(key)]
    return out


def pod_violations(pod: Mapping[str, Any]) -> list[str]:
    """Why the host would be exposed by this pod (Pod Security baseline); empty when fine."""
    spec: dict[str, Any] = pod.get("spec") or {}
    out = [f"pod: {field}" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    pod_context = spec.get("securityContext") or {}
    out += _context_violations("pod", pod_context)
    out += [
        f"pod: sysctl {s.get('name')}"
        for s in pod_context.get("sysctls") or []
        if s.get("name") not in SAFE_SYSCTLS
    ]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    out += [
        f"container '{key[len(_APPARMOR_ANNOTATION) :]}': AppArmor unconfined"
        for key, value in annotations.items()
        if key.startswith(_APPARMOR_ANNOTATION) and value == "unconfined"
    ]
    out += [
        f"volume '{v.get('name')}': hostPath"
        for v in spec.get("volumes") or []
        if v.get("hostPath")
    ]
    for label, container in containers(spec):
        who = f"{label} '{container.get('name')}'"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            out.append(f"{who}: privileged")
        out += _context_violations(who, context)
        if context.get("procMount") not in (None, "Default"):
            out.append(f"{who}: procMount {context['procMount']}")
        added = (context.get("capabilities") or {}).get("add") or []
        out += [f"{who}: capability {cap}" for cap in added if cap not in BASELINE_CAPABILITIES]
        ports = container.get("ports") or []
        out += [f"{who}: hostPort {p['hostPort']}" for p in ports if p.get("hostPort")]
    return out
