from pytest_vcluster.gobuild import (
    K8S_COMPONENTS,
    recipe_for,
    render_go_mod,
    render_tools_go,
    staging_replaces,
)
from pytest_vcluster.versions import parse_k8s_version

KUBERNETES_GO_MOD = """module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
	github.com/spf13/cobra v1.10.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_replaces_pin_only_staging_modules_to_v0_minor_patch() -> None:
    k8s = parse_k8s_version("1.36")
    assert staging_replaces(KUBERNETES_GO_MOD, k8s) == [
        "\tk8s.io/api => k8s.io/api v0.36.3",
        "\tk8s.io/client-go => k8s.io/client-go v0.36.3",
    ]


def test_k8s_recipe_sets_the_real_version_and_shares_one_module_dir() -> None:
    k8s = parse_k8s_version("1.37")
    recipes = [recipe_for(tool, "ignored", k8s) for tool in K8S_COMPONENTS]
    assert {r.workdir_name for r in recipes} == {"kubernetes-v1.37.2"}
    api = recipes[0]
    assert api.package == "k8s.io/kubernetes/cmd/kube-apiserver"
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in api.ldflags
    go_mod = render_go_mod(api, staging_replaces(KUBERNETES_GO_MOD, k8s))
    assert "require k8s.io/kubernetes v1.37.2" in go_mod
    assert "k8s.io/api => k8s.io/api v0.37.2" in go_mod
    tools = render_tools_go(api.siblings)
    assert tools.startswith("//go:build tools")
    assert all(f'_ "k8s.io/kubernetes/cmd/{c}"' in tools for c in K8S_COMPONENTS)


def test_other_recipes() -> None:
    k8s = parse_k8s_version(None)
    etcd = recipe_for("etcd", "3.6.16", k8s)
    assert etcd.module == "go.etcd.io/etcd/server/v3"
    assert etcd.version == "v3.6.16"
    assert etcd.main_go is not None
    assert "etcdmain.Main(os.Args)" in etcd.main_go
    helm = recipe_for("helm", "3.22.0", k8s)
    assert helm.ldflags == ("-X helm.sh/helm/v3/internal/version.version=v3.22.0",)
    assert recipe_for("kwok", "0.8.0", k8s).package == "sigs.k8s.io/kwok/cmd/kwok"
    assert recipe_for("kind", "0.33.0", k8s).package == "sigs.k8s.io/kind"
