{{/* The name of every object of the release (release names are at most 53 characters). */}}
{{- define "vcluster.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vcluster.selectorLabels" -}}
app.kubernetes.io/name: vcluster
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vcluster.labels" -}}
{{ include "vcluster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pytest-vcluster
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* In-cluster DNS name of the API server Service. */}}
{{- define "vcluster.serviceHost" -}}
{{ include "vcluster.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{- define "vcluster.image" -}}
{{- $tag := required (printf "%s.image.tag is required: `pytest-vcluster images build` builds the %s image and prints its tag" .key .dir) .image.tag -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}

{{/*
The PKI. pytest-vcluster passes it (pki.*, with --set-file: ECDSA keys, an admin client
certificate). With plain `helm install` (no pki.caCert) the chart makes one: the release's
existing Secret on an upgrade (its certificates stay), else a new CA, API server certificate and
service-account key (RSA, sprig), and a random admin token (sprig cannot put system:masters in a
certificate; the token file gives the admin that group). Stored into .Values.pki once per render,
so every template sees the same certificates.
*/}}
{{- define "vcluster.ensurePki" -}}
{{- $pki := .Values.pki -}}
{{- if not $pki.caCert -}}
{{- $fullname := include "vcluster.fullname" . -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (printf "%s-pki" $fullname) -}}
{{- if and $old (hasKey ($old.data | default dict) "admin.token") -}}
{{- $_ := set $pki "caCert" (index $old.data "ca.crt" | b64dec) -}}
{{- $_ := set $pki "caKey" (index $old.data "ca.key" | b64dec) -}}
{{- $_ := set $pki "apiServerCert" (index $old.data "apiserver.crt" | b64dec) -}}
{{- $_ := set $pki "apiServerKey" (index $old.data "apiserver.key" | b64dec) -}}
{{- $_ := set $pki "serviceAccountKey" (index $old.data "sa.key" | b64dec) -}}
{{- $_ := set $pki "serviceAccountPub" (index $old.data "sa.pub" | b64dec) -}}
{{- $_ := set $pki "adminToken" (index $old.data "admin.token" | b64dec) -}}
{{- if hasKey $old.data "kubelet-client.crt" -}}
{{- $_ := set $pki "kubeletClientCert" (index $old.data "kubelet-client.crt" | b64dec) -}}
{{- $_ := set $pki "kubeletClientKey" (index $old.data "kubelet-client.key" | b64dec) -}}
{{- else -}}{{- /* a release made before the kubelet API: one more certificate from its CA */ -}}
{{- $ca := buildCustomCert (index $old.data "ca.crt") (index $old.data "ca.key") -}}
{{- $kc := genSignedCert "kube-apiserver-kubelet-client" nil nil 3650 $ca -}}
{{- $_ := set $pki "kubeletClientCert" $kc.Cert -}}
{{- $_ := set $pki "kubeletClientKey" $kc.Key -}}
{{- end -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $fullname) 3650 -}}
{{- $host := include "vcluster.serviceHost" . -}}
{{- $net := splitList "." (first (splitList "/" .Values.controlPlane.serviceCIDR)) -}}
{{- $kubernetesIP := printf "%s.%s.%s.%d" (index $net 0) (index $net 1) (index $net 2) (add1 (atoi (index $net 3))) -}}
{{- $dns := list "localhost" $host (printf "%s.cluster.local" $host) "kubernetes" "kubernetes.default" "kubernetes.default.svc" "kubernetes.default.svc.cluster.local" -}}
{{- $ips := list "127.0.0.1" $kubernetesIP -}}
{{- /* A Service made before the release (as pytest-vcluster does): pods dial its IP */ -}}
{{- $svc := lookup "v1" "Service" .Release.Namespace $fullname -}}
{{- if and $svc (ne ($svc.spec.clusterIP | default "None") "None") -}}
{{- $ips = append $ips $svc.spec.clusterIP -}}
{{- end -}}
{{- $api := genSignedCert "kube-apiserver" $ips $dns 3650 $ca -}}
{{- $kc := genSignedCert "kube-apiserver-kubelet-client" nil nil 3650 $ca -}}
{{- $sa := genPrivateKey "rsa" -}}
{{- $_ := set $pki "caCert" $ca.Cert -}}
{{- $_ := set $pki "caKey" $ca.Key -}}
{{- $_ := set $pki "apiServerCert" $api.Cert -}}
{{- $_ := set $pki "apiServerKey" $api.Key -}}
{{- $_ := set $pki "kubeletClientCert" $kc.Cert -}}
{{- $_ := set $pki "kubeletClientKey" $kc.Key -}}
{{- /* kube-apiserver reads the public half from the private key file */ -}}
{{- $_ := set $pki "serviceAccountKey" $sa -}}
{{- $_ := set $pki "serviceAccountPub" $sa -}}
{{- $_ := set $pki "adminToken" (randAlphaNum 48) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vcluster.pki" -}}
{{- $ := .root -}}
{{- include "vcluster.ensurePki" $ -}}
{{- required (printf "pki.%s is required with the other pki.* values (pytest-vcluster passes them all; leave them all empty to let the chart make them)" .key) (index $.Values.pki .key) -}}
{{- end -}}

{{/* A kubeconfig for the vcluster admin at the given server. */}}
{{- define "vcluster.kubeconfig" -}}
apiVersion: v1
kind: Config
clusters:
  - name: {{ .name }}
    cluster:
      server: {{ .server }}
      certificate-authority-data: {{ include "vcluster.pki" (dict "root" .root "key" "caCert") | b64enc }}
users:
  - name: admin
    user:
      {{- if .root.Values.pki.adminToken }}
      token: {{ .root.Values.pki.adminToken }}
      {{- else }}
      client-certificate-data: {{ include "vcluster.pki" (dict "root" .root "key" "adminCert") | b64enc }}
      client-key-data: {{ include "vcluster.pki" (dict "root" .root "key" "adminKey") | b64enc }}
      {{- end }}
contexts:
  - name: {{ .name }}
    context:
      cluster: {{ .name }}
      user: admin
current-context: {{ .name }}
{{- end -}}


{{/* Comma-separated resources whose sync.<resource>.enabled is false ("" when none). */}}
{{- define "vcluster.disabledSync" -}}
{{- $off := list -}}
{{- range $name, $v := .Values.sync -}}
{{- if and (kindIs "map" $v) (not $v.enabled) -}}
{{- $off = append $off $name -}}
{{- end -}}
{{- end -}}
{{- join "," (sortAlpha $off) -}}
{{- end -}}


{{/* The API server's readiness path for the probes: with the etcd template, without the two
post-start hooks whose objects the template carries (each first looks a second after the server
serves); the plugin leaves out the same (hosts/incluster/chart.py readyz_exclude). */}}
{{- define "vcluster.readyz" -}}
{{- if .Values.controlPlane.etcdTemplate -}}
/readyz?exclude=poststarthook/rbac/bootstrap-roles&exclude=poststarthook/scheduling/bootstrap-system-priority-classes
{{- else -}}
/readyz
{{- end -}}
{{- end -}}


{{/* CoreDNS's Corefile (root, upstream: where other names go, kubeconfig: "" for the pod's
service account, probes: health and ready endpoints). Names of the host's own namespace
(<namespace>.svc.<hostClusterDomain>: the vcluster's API Service) go to the host's DNS, before
the vcluster's cluster.local would answer them. */}}
{{- define "vcluster.corefile" -}}
{{ .root.Release.Namespace }}.svc.{{ .root.Values.coredns.hostClusterDomain }}:1053 {
    errors
    forward . {{ .upstream }}
    cache 5
}
.:1053 {
    errors
    {{- if .probes }}
    health :8080
    ready :8181
    {{- end }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        {{- with .kubeconfig }}
        kubeconfig {{ . }}
        {{- end }}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    forward . {{ .upstream }}
    cache 5
    loop
    loadbalance
}
{{- end -}}

{{/* "true" when CoreDNS runs in the vcluster's pod (coredns.enabled and coredns.embedded). */}}
{{- define "vcluster.dnsEmbedded" -}}
{{- if and .Values.coredns.enabled .Values.coredns.embedded -}}true{{- end -}}
{{- end -}}
