#!/usr/bin/env bash
# One script for CI pipelines: GitHub Actions (github-actions.yml), GitLab CI (gitlab-ci.yml)
# and this project's own .ci/run call it, so what they run is tested here.
#
#   bash examples/ci/run-suite.sh [PYTEST ARGS...]      (default: examples -v)
#
# Runs the suite on the kind host (PYTEST_VCLUSTER_HOST overrides) with artifacts of failed
# tests under $ARTIFACTS (default artifacts/): one folder per test (objects, logs, events, the
# syncer's log) and a JUnit XML naming each folder. Keep PYTEST_VCLUSTER_CACHE_DIR (default
# ~/.cache/pytest-vcluster) between runs: binaries and images are cached there by version.
# pytest's "no tests collected" (exit code 5) is a failure here.
set -euo pipefail
ARTIFACTS="${ARTIFACTS:-artifacts}"
HOST="${PYTEST_VCLUSTER_HOST:-kind}"
if [ "$#" -eq 0 ]; then set -- examples -v; fi
mkdir -p "$ARTIFACTS"
# What this machine has and lacks, with the fixes (exit code 1 only when nothing could run).
pytest-vcluster doctor || echo "run-suite: doctor found problems (above); running anyway"
set +e
pytest "$@" --vcluster-host="$HOST" \
    --vcluster-artifacts="$ARTIFACTS/vcluster" --junitxml="$ARTIFACTS/junit.xml"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "run-suite: no tests were collected by: pytest $*"; exit 1; fi
exit "$rc"
