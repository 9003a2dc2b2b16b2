{{/* Names and labels shared by every template. */}}

{{- define "edge-quota.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edge-quota.fullname" -}}
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

{{- define "edge-quota.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "edge-quota.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "edge-quota.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edge-quota.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edge-quota.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edge-quota.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "edge-quota.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* PostgreSQL when a Secret holds DATABASE_URL; SQLite on the PVC otherwise. */}}
{{- define "edge-quota.postgres" -}}
{{- if .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{- define "edge-quota.claimName" -}}
{{- default (printf "%s-data" (include "edge-quota.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* The configuration the chart refuses, with the reason. */}}
{{- define "edge-quota.validate" -}}
{{- if not (has .Values.auth.mode (list "kubernetes" "static" "none")) }}
{{- fail (printf "auth.mode is %q: expected kubernetes, static or none" .Values.auth.mode) }}
{{- end }}
{{- if and (eq .Values.auth.mode "static") (not .Values.auth.tokensSecret) }}
{{- fail "auth.mode=static needs auth.tokensSecret: a Secret with key tokens.yaml" }}
{{- end }}
{{- if lt (int .Values.auth.tokenExpirationSeconds) 600 }}
{{- fail "auth.tokenExpirationSeconds must be at least 600 (the API server's minimum)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.database.existingSecret) }}
{{- fail "replicaCount > 1 needs PostgreSQL: set database.existingSecret to a Secret holding DATABASE_URL (one SQLite file cannot be shared by several pods)" }}
{{- end }}
{{- end }}

{{/*
AUTH_ADMINS: the chart's ServiceAccount (the operator calls with its token)
and auth.admins.
*/}}
{{- define "edge-quota.authAdmins" -}}
{{- $sa := printf "system:serviceaccount:%s:%s" .Release.Namespace (include "edge-quota.serviceAccountName" .) }}
{{- join "," (prepend .Values.auth.admins $sa) }}
{{- end }}
