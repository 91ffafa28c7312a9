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
{{- $tag := required (printf "%s.image.tag is required (build it: python images/%s/build.py)" .key .dir) .image.tag -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}

{{- define "vcluster.pki" -}}
{{- $ := .root -}}
{{- required (printf "pki.%s is required: the chart does not generate certificates; pytest-vcluster passes them with --set-file (chart/NOTES-dev.md)" .key) (index $.Values.pki .key) -}}
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
      client-certificate-data: {{ include "vcluster.pki" (dict "root" .root "key" "adminCert") | b64enc }}
      client-key-data: {{ include "vcluster.pki" (dict "root" .root "key" "adminKey") | b64enc }}
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
