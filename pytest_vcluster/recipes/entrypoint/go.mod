module pytest-vcluster.io/control-plane/entrypoint

go 1.22
