"""The syncer: copies a virtual cluster's workloads into one host namespace."""
