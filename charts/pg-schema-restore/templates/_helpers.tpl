{{- define "pgsr.name" -}}pg-schema-restore{{- end -}}
{{/* Names of this release's objects: two releases never share one. */}}
{{- define "pgsr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- define "pgsr.serviceAccountName" -}}
{{- default (include "pgsr.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
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
{{/*
RBAC rules, defined once. "pgsr.watchRules": what the operator needs where it
watches SchemaRestores (a Role per watched namespace, or one ClusterRole).
"pgsr.jobRules": Jobs and their connection Secrets, only in the operator's
own namespace. tests/kube/test_tenancy.py runs the operator under exactly
these rules and checks that each verb was used.
*/}}
{{- define "pgsr.watchRules" -}}
- apiGroups: [pgschemarestore.io]
  resources: [schemarestores]
  verbs: [get, list, watch, patch]
- apiGroups: [pgschemarestore.io]
  resources: [schemarestores/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
{{- define "pgsr.jobRules" -}}
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, patch, delete]
{{- end -}}
