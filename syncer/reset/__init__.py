"""Reset: return a vcluster to a snapshot of its etcd keys, and its host copies with it."""
