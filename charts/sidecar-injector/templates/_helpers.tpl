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

{{- define "sidecar-injector.labels" -}}
helm.sh/chart: {{ include "sidecar-injector.chart" . }}
{{ include "sidecar-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecar-injector
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
