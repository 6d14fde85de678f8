{{/* The name of every object. */}}
{{- define "aoo.fullname" -}}
{{- default "alicloud-ops-operator" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; the same as the kustomize base's. */}}
{{- define "aoo.labels" -}}
app.kubernetes.io/name: {{ include "aoo.fullname" . }}
{{- end -}}
