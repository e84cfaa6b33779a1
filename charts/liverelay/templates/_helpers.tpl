{{- define "liverelay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "liverelay.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role: (dict "ctx" $ "role" "edge") */}}
{{- define "liverelay.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "liverelay.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "liverelay.tokenSecret" -}}
{{- .Values.clusterToken.existingSecret | default (printf "%s-cluster-token" (include "liverelay.fullname" .)) -}}
{{- end -}}

{{/* host:port list of the registry */}}
{{- define "liverelay.redisAddress" -}}
{{- if .Values.redis.bundled.enabled -}}
{{ include "liverelay.fullname" . }}-redis:6379
{{- else -}}
{{ required "redis.address is required when redis.bundled.enabled is false" .Values.redis.address }}
{{- end -}}
{{- end -}}

{{/* redis:// URL(s); the password comes from $(REDIS_PASSWORD), expanded by the kubelet. */}}
{{- define "liverelay.redisUrl" -}}
{{- $scheme := ternary "rediss" "redis" (and .Values.redis.tls (not .Values.redis.bundled.enabled)) -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne .Values.redis.existingSecret "") -}}
{{- $urls := list -}}
{{- range (splitList "," (include "liverelay.redisAddress" .)) -}}
{{- $urls = append $urls (printf "%s://%s%s" $scheme $auth (trim .)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
