"""The kubelet API of the fake nodes: logs, exec, attach and port-forward of synced pods."""
