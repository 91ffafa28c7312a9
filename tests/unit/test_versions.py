import pytest

from pytest_vcluster.errors import UnsupportedVersionError
from pytest_vcluster.versions import K8sVersion, parse_k8s_version, parse_loose


@pytest.mark.parametrize(
    ("raw", "expected", "exact"),
    [
        (None, K8sVersion(1, 37, 2), False),
        ("1.37", K8sVersion(1, 37, 2), False),
        ("v1.34", K8sVersion(1, 34, 4), False),
        ("1.35.1", K8sVersion(1, 35, 1), True),
        (" 1.36 ", K8sVersion(1, 36, 3), False),
    ],
)
def test_parse_k8s_version(raw: str | None, expected: K8sVersion, exact: bool) -> None:
    got = parse_k8s_version(raw)
    assert got == expected
    assert got.exact is exact
    assert got.tag == f"v{expected}"
    assert got.staging_tag == f"v0.{expected.minor}.{expected.patch}"


@pytest.mark.parametrize("raw", ["1.20", "2.0", "1.99.1", "latest", "1", ""])
def test_unsupported_versions_list_supported_ones(raw: str) -> None:
    with pytest.raises(UnsupportedVersionError, match=r"1\.34, 1\.35, 1\.36, 1\.37"):
        parse_k8s_version(raw if raw else "x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kubernetes v1.37.2", (1, 37, 2)),
        ("etcd Version: 3.4.23\nGit SHA: x", (3, 4, 23)),
        ("v3.22.0+gabc", (3, 22, 0)),
        ("kind v0.33.0 go1.26.8 linux/amd64", (0, 33, 0)),
        ("no version here", None),
    ],
)
def test_parse_loose(text: str, expected: tuple[int, ...] | None) -> None:
    assert parse_loose(text) == expected
