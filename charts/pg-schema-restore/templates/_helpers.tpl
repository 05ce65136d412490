{{- define "pgsr.name" -}}pg-schema-restore{{- end -}}
{{- define "pgsr.labels" -}}
app.kubernetes.io/name: {{ include "pgsr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "pgsr.selector" -}}
app.kubernetes.io/name: {{ include "pgsr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
