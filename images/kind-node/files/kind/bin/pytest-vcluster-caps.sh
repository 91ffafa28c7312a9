#!/bin/bash
# Where this node cannot grant CAP_SYS_RESOURCE (its bounding set lacks bit 24), runc cannot
# set the negative oom_score_adj kubelet asks for pod sandboxes, and every pod fails with
# "can't get final child's PID from pipe: EOF". containerd's restrict_oom_score_adj clamps the
# value to what the runtime may set. Nodes with the capability are left as they are.
set -euo pipefail
bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (16#$bnd >> 24 & 1) == 0 )); then
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
fi
