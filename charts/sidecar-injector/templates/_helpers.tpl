{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "sidecar-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else the release name when it contains the chart name, else <release>-<chart>.
It names every object of the release, the cluster-scoped ones included.
*/}}
{{- define "sidecar-injector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sidecar-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidecar-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecar-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels the chart sets on every object; commonLabels and podLabels may not set these keys. */}}
{{- define "sidecar-injector.chartLabels" -}}
helm.sh/chart: {{ include "sidecar-injector.chart" . }}
{{ include "sidecar-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecar-injector
{{- end }}

{{/*
Labels of every object: the chart's, then commonLabels. A key of commonLabels that the chart sets fails the
render (a YAML map with a duplicate key is refused by the API server, and the selector labels must not change).
*/}}
{{- define "sidecar-injector.labels" -}}
{{ include "sidecar-injector.chartLabels" . }}
{{- include "sidecar-injector.checkReservedLabels" (dict "ctx" . "value" "commonLabels" "labels" .Values.commonLabels) }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the injector's pods: the object labels, then podLabels (which win over commonLabels). */}}
{{- define "sidecar-injector.podLabels" -}}
{{- include "sidecar-injector.checkReservedLabels" (dict "ctx" . "value" "podLabels" "labels" .Values.podLabels) }}
{{- $labels := merge (dict) (.Values.podLabels | default dict) (.Values.commonLabels | default dict) (include "sidecar-injector.chartLabels" . | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{/* Fails when the map .labels (the value named .value) sets a key of sidecar-injector.chartLabels. */}}
{{- define "sidecar-injector.checkReservedLabels" -}}
{{- $reserved := include "sidecar-injector.chartLabels" .ctx | fromYaml }}
{{- range $key, $_ := .labels }}
{{- if hasKey $reserved $key }}
{{- fail (printf "%s: the label %q is set by the chart (on every object, and in the Deployment's selector when it is app.kubernetes.io/name or app.kubernetes.io/instance); remove it from %s (use nameOverride or the release name to change those)" $.value $key $.value) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sidecar-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sidecar-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sidecar-injector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate (tls.crt, tls.key), whatever the TLS mode. */}}
{{- define "sidecar-injector.tlsSecretName" -}}
{{- $default := printf "%s-tls" (include "sidecar-injector.fullname" .) }}
{{- if eq .Values.tls.mode "selfManaged" }}
{{- default $default .Values.tls.selfManaged.secretName }}
{{- else if eq .Values.tls.mode "certManager" }}
{{- default $default .Values.tls.certManager.secretName }}
{{- else }}
{{- required "tls.secret.name is required when tls.mode is secret" .Values.tls.secret.name }}
{{- end }}
{{- end }}

{{/* Name of the MutatingWebhookConfiguration (cluster-scoped). */}}
{{- define "sidecar-injector.webhookConfigName" -}}
{{- include "sidecar-injector.fullname" . }}
{{- end }}

{{/* Where the webhook server reads tls.crt and tls.key (--cert-dir). */}}
{{- define "sidecar-injector.certDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end }}

{{/* Names of the cert-manager objects. */}}
{{- define "sidecar-injector.certificateName" -}}
{{- printf "%s-serving" (include "sidecar-injector.fullname" .) }}
{{- end }}
