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

{{/* The Secret with `admin-token` and `play-token-secret`. */}}
{{- define "liverelay.controlSecret" -}}
{{- .Values.control.existingSecret | default (printf "%s-control" (include "liverelay.fullname" .)) -}}
{{- end -}}

{{/* Control's gRPC endpoint, which ingests ask about stream keys. */}}
{{- define "liverelay.controlUrl" -}}
{{ ternary "https" "http" .Values.relayTls.enabled }}://{{ include "liverelay.fullname" . }}-control:50051
{{- end -}}

{{/* The Secret with the pods' TLS certificate (relay and control gRPC). */}}
{{- define "liverelay.clusterTlsSecret" -}}
{{- if .Values.relayTls.certManager.enabled -}}
{{ include "liverelay.fullname" . }}-cluster-tls
{{- else -}}
{{ required "relayTls.existingSecret is required when relayTls.enabled (or relayTls.certManager.enabled)" .Values.relayTls.existingSecret }}
{{- end -}}
{{- end -}}

{{/* The Secret with the RTMPS certificate. */}}
{{- define "liverelay.rtmpsSecret" -}}
{{- if .Values.rtmps.certManager.enabled -}}
{{ include "liverelay.fullname" . }}-rtmps-tls
{{- else -}}
{{ required "rtmps.existingSecret is required when rtmps.enabled (or rtmps.certManager.enabled)" .Values.rtmps.existingSecret }}
{{- end -}}
{{- end -}}

{{/* The Secret with the HTTPS certificate of the pods' HTTP port. */}}
{{- define "liverelay.httpTlsSecret" -}}
{{ required "httpTls.existingSecret is required when httpTls.enabled" .Values.httpTls.existingSecret }}
{{- end -}}

{{/* The scheme of the pods' HTTP port, as URLs spell it. */}}
{{- define "liverelay.httpScheme" -}}
{{ ternary "https" "http" .Values.httpTls.enabled }}
{{- end -}}

{{/* A probe's httpGet on the HTTP port at `path`, over HTTPS with httpTls:
     (dict "ctx" $ "path" PATH). */}}
{{- define "liverelay.probeGet" -}}
{path: {{ .path }}, port: http{{ if .ctx.Values.httpTls.enabled }}, scheme: HTTPS{{ end }}}
{{- end -}}

{{/* HTTPS on the HTTP port, with httpTls: the container's env and volume mount, the pod's
     volume. */}}
{{- define "liverelay.httpTlsEnv" -}}
- name: LIVERELAY_HTTP__TLS_CERT
  value: /etc/liverelay/https/tls.crt
- name: LIVERELAY_HTTP__TLS_KEY
  value: /etc/liverelay/https/tls.key
{{- end -}}
{{- define "liverelay.httpTlsMount" -}}
- {name: http-tls, mountPath: /etc/liverelay/https, readOnly: true}
{{- end -}}
{{- define "liverelay.httpTlsVolume" -}}
- name: http-tls
  secret:
    secretName: {{ include "liverelay.httpTlsSecret" . }}
{{- end -}}

{{/* Environment of a gRPC server or client of the cluster TLS: (dict "ctx" $ "server" BOOL
     "client" BOOL); paths in the relay-tls volume. */}}
{{- define "liverelay.clusterTlsEnv" -}}
{{- $tls := .ctx.Values.relayTls -}}
{{- if .server }}
- name: LIVERELAY_CLUSTER__TLS_CERT
  value: /etc/liverelay/tls/tls.crt
- name: LIVERELAY_CLUSTER__TLS_KEY
  value: /etc/liverelay/tls/tls.key
{{- if $tls.mutual }}
- name: LIVERELAY_CLUSTER__TLS_CLIENT_CA
  value: /etc/liverelay/tls/ca.crt
{{- end }}
{{- end }}
{{- if .client }}
- name: LIVERELAY_CLUSTER__TLS_CA
  value: /etc/liverelay/tls/ca.crt
{{- with $tls.serverName }}
- name: LIVERELAY_CLUSTER__TLS_DOMAIN
  value: {{ . | quote }}
{{- end }}
{{- if $tls.mutual }}
- name: LIVERELAY_CLUSTER__TLS_CLIENT_CERT
  value: /etc/liverelay/tls/tls.crt
- name: LIVERELAY_CLUSTER__TLS_CLIENT_KEY
  value: /etc/liverelay/tls/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{/* A Secret's data value, base64: (dict "value" GIVEN "old" DATA_OF_THE_DEPLOYED_SECRET)
     given, else the one already deployed (kept across upgrades), else random. */}}
{{- define "liverelay.secretData" -}}
{{- if .value -}}
{{ .value | b64enc | quote }}
{{- else if .old -}}
{{ .old | quote }}
{{- else -}}
{{ randAlphaNum 40 | b64enc | quote }}
{{- end -}}
{{- end -}}

{{/* The settings file (YAML) every role reads; control adds its webhooks to it. */}}
{{- define "liverelay.settings" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if not $cfg.relays }}{{ $_ := unset $cfg "relays" }}{{ end }}
{{- $_ := set $cfg "redis" (dict "cluster" .Values.redis.cluster "lease_ttl_ms" .Values.redis.leaseTtlMs) }}
{{- $_ := set $cfg "log" (dict "format" .Values.logFormat) }}
{{- toYaml $cfg }}
{{- end -}}

{{/* host:port list of the registry */}}
{{- define "liverelay.redisAddress" -}}
{{- if .Values.redis.bundled.enabled -}}
{{ include "liverelay.fullname" . }}-redis:6379
{{- else -}}
{{ required "redis.address is required when redis.bundled.enabled is false" .Values.redis.address }}
{{- end -}}
{{- end -}}

{{/* The Secret with `redis-password`, if the registry has a password (the bundled Redis always
     has one). */}}
{{- define "liverelay.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}
{{ .Values.redis.existingSecret }}
{{- else if .Values.redis.bundled.enabled -}}
{{ include "liverelay.fullname" . }}-redis
{{- end -}}
{{- end -}}

{{/* redis:// URL(s); the password comes from $(REDIS_PASSWORD), expanded by the kubelet. */}}
{{- define "liverelay.redisUrl" -}}
{{- $scheme := ternary "rediss" "redis" (and .Values.redis.tls (not .Values.redis.bundled.enabled)) -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne (include "liverelay.redisSecret" .) "") -}}
{{- $urls := list -}}
{{- range (splitList "," (include "liverelay.redisAddress" .)) -}}
{{- $urls = append $urls (printf "%s://%s%s" $scheme $auth (trim .)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* Control reconciles Relay resources: it gets a ServiceAccount, a token and a Role. */}}
{{- define "liverelay.relayResources" -}}
{{- if and .Values.control.enabled .Values.control.relayResources.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* Control's ServiceAccount (and its Role and RoleBinding). */}}
{{- define "liverelay.controlServiceAccount" -}}
{{ include "liverelay.fullname" . }}-control
{{- end -}}

{{/* checksum/config of a role's pods: (dict "ctx" $ "role" "edge"). Only ingests run
     config.relays, so a change to the list rolls ingests and leaves edges and control be. */}}
{{- define "liverelay.configChecksum" -}}
{{- if eq .role "ingest" -}}
{{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
{{- else -}}
{{ omit (include "liverelay.settings" .ctx | fromYaml) "relays" | toYaml | sha256sum }}
{{- end -}}
{{- end -}}

{{/* Whether a role's pods run the public HTTP listener (browser playback only): edges, with
     edge.publicHttp.enabled. (dict "ctx" $ "role" "edge") */}}
{{- define "liverelay.publicHttp" -}}
{{- if and (eq .role "edge") .ctx.Values.edge.publicHttp.enabled -}}
true
{{- end -}}
{{- end -}}
