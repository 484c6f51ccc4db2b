{{/* The serve arguments, mounts and volumes of clientAuth (values.yaml), included by the Deployment. */}}

{{- define "sidecar-injector.clientAuthArgs" -}}
{{- if .Values.clientAuth.caBundle }}
- --client-ca-file=/etc/sidecar-injector/client-ca/ca.crt
{{- with .Values.clientAuth.allowedNames }}
- --client-names={{ join "," . }}
{{- end }}
{{- else if .Values.clientAuth.allowedNames }}
{{- fail "clientAuth.allowedNames needs clientAuth.caBundle: the names are checked in the client certificate that CA issued" }}
{{- end }}
{{- with .Values.clientAuth.token.secretName }}
- --client-token-file=/etc/sidecar-injector/client-token/token
{{- end }}
{{- end }}

{{- define "sidecar-injector.clientAuthMounts" -}}
{{- if .Values.clientAuth.caBundle }}
- name: client-ca
  mountPath: /etc/sidecar-injector/client-ca
  readOnly: true
{{- end }}
{{- if .Values.clientAuth.token.secretName }}
- name: client-token
  mountPath: /etc/sidecar-injector/client-token
  readOnly: true
{{- end }}
{{- end }}

{{- define "sidecar-injector.clientAuthVolumes" -}}
{{- if .Values.clientAuth.caBundle }}
- name: client-ca
  configMap:
    name: {{ include "sidecar-injector.fullname" . }}-client-ca
{{- end }}
{{- with .Values.clientAuth.token.secretName }}
- name: client-token
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.clientAuth.token.key }}
        path: token
{{- end }}
{{- end }}
