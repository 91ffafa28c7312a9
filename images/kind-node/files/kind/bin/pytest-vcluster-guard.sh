#!/bin/bash
# Traffic for the cluster's virtual networks must never leave the node. Until kube-proxy has
# programmed a Service, a packet to its ClusterIP is not translated and would follow the default
# route out of the node (and out of the host); until cni-agent has routed another node's
# podCIDR, the same happens to pod IPs there. So:
#   - REJECT, in FORWARD and OUTPUT, packets still addressed to the Service CIDR (translated
#     packets carry their endpoint's address by then, so real Service traffic is untouched);
#   - an "unreachable" route for the whole pod CIDR (more specific per-pod and per-node routes
#     win).
# CIDRs come from the kubeadm config kind wrote; runs before every kubelet start; idempotent.
set -uo pipefail
conf=/kind/kubeadm.conf
field() { sed -n "s/^ *$1: *//p" "$conf" 2>/dev/null | head -n 1 | tr -d '"'; }
svc=$(field serviceSubnet)
pods=$(field podSubnet)
svc=${svc:-10.96.0.0/16}
pods=${pods:-10.244.0.0/16}
tag=(-m comment --comment "pytest-vcluster: no Service traffic leaves the node")
for cidr in ${svc//,/ }; do
  ipt=iptables
  [[ $cidr == *:* ]] && ipt=ip6tables
  for chain in FORWARD OUTPUT; do
    "$ipt" -C "$chain" -d "$cidr" "${tag[@]}" -j REJECT 2>/dev/null \
      || "$ipt" -I "$chain" -d "$cidr" "${tag[@]}" -j REJECT \
      || echo "pytest-vcluster-guard: cannot guard $cidr in $chain" >&2
  done
done
for cidr in ${pods//,/ }; do
  family=-4
  [[ $cidr == *:* ]] && family=-6
  ip "$family" route replace unreachable "$cidr" \
    || echo "pytest-vcluster-guard: cannot add unreachable route for $cidr" >&2
done
exit 0
