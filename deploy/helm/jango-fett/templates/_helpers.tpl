{{/*
The operator's objects have fixed names (jango-fett-operator): its ClusterRole and the users'
ClusterRoles are cluster-wide, so the chart is installed once per cluster.
*/}}
{{- define "jango-fett.name" -}}
jango-fett-operator
{{- end }}

{{- define "jango-fett.selectorLabels" -}}
app.kubernetes.io/name: jango-fett-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jango-fett.labels" -}}
{{ include "jango-fett.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: jango-fett
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "jango-fett.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Secret holding JF_POSTGRES_ADMIN_URL, and its key. */}}
{{- define "jango-fett.postgresSecretName" -}}
{{ if .Values.postgres.adminUrl }}jango-fett-postgres-admin{{ else }}{{ required "postgres.existingSecret is required when postgres.adminUrl is empty" .Values.postgres.existingSecret }}{{ end }}
{{- end }}

{{- define "jango-fett.postgresSecretKey" -}}
{{ if .Values.postgres.adminUrl }}url{{ else }}{{ required "postgres.existingSecretKey is required when postgres.adminUrl is empty" .Values.postgres.existingSecretKey }}{{ end }}
{{- end }}

{{/* The roles environments may grant, checked: never cluster-admin, at least one. */}}
{{- define "jango-fett.userRoles" -}}
{{- $roles := .Values.environments.userRoles | default list }}
{{- if not $roles }}{{ fail "environments.userRoles must name at least one ClusterRole" }}{{ end }}
{{- if has "cluster-admin" $roles }}{{ fail "environments.userRoles must not contain cluster-admin" }}{{ end }}
{{- toJson $roles }}
{{- end }}
