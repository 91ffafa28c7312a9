#!/bin/bash
# Traffic for the cluster's virtual networks must never leave the node. Until kube-proxy has
# programmed a Service, a packet to its ClusterIP is not translated and would follow the default
# route out of the node (and out of the host); until cni-agent has routed another node's
# podCIDR, the same happens to pod IPs there. So:
#   - REJECT, in FORWARD and OUTPUT, packets still addressed to the Service CIDR (translated
#     packets carry their endpoint's address by then, so real Service traffic is untouched);
#   - an "unreachable" route for the whole pod CIDR (more specific per-pod and per-node routes
#     win).
# And NetworkPolicy: the first packet of each new connection to or from a pod goes to netfilter
# queue 100, where the kube-network-policies agent (manifests/default-cni.yaml) gives its verdict
# (--queue-bypass: while no agent listens, packets pass). In mangle POSTROUTING, as that agent's
# own nftables chain (srcnat-5): after DNAT, before SNAT, so it sees the real endpoints.
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
queue=PYTEST-VCLUSTER-NETPOL
for ipt in iptables ip6tables; do
  "$ipt" -t mangle -N "$queue" 2>/dev/null || "$ipt" -t mangle -F "$queue"
  "$ipt" -t mangle -C POSTROUTING -j "$queue" 2>/dev/null \
    || "$ipt" -t mangle -A POSTROUTING -j "$queue" \
    || echo "pytest-vcluster-guard: cannot hook $queue ($ipt)" >&2
  "$ipt" -t mangle -A "$queue" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  "$ipt" -t mangle -A "$queue" -m owner --uid-owner 0 -j RETURN  # the node's own (kubelet)
done
ip6tables -t mangle -A "$queue" -p ipv6-icmp -j RETURN
for cidr in ${pods//,/ }; do
  ipt=iptables
  [[ $cidr == *:* ]] && ipt=ip6tables
  for dir in -s -d; do
    "$ipt" -t mangle -A "$queue" "$dir" "$cidr" -j NFQUEUE --queue-num 100 --queue-bypass \
      || echo "pytest-vcluster-guard: cannot queue $cidr for NetworkPolicy" >&2
  done
done
for cidr in ${pods//,/ }; do
  family=-4
  [[ $cidr == *:* ]] && family=-6
  ip "$family" route replace unreachable "$cidr" \
    || echo "pytest-vcluster-guard: cannot add unreachable route for $cidr" >&2
done
exit 0
