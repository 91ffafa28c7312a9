module pytest-vcluster.local/kind-node

go 1.22
