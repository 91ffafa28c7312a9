module pytest-vcluster.local/runc-shim

go 1.22
