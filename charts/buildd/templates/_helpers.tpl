{{/* Names, labels, images and the settings several templates share. */}}

{{- define "buildd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; components append -accounts, -broker, ... (at most 63 characters in all). */}}
{{- define "buildd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "buildd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component: (dict "ctx" $ "component" "broker"). */}}
{{- define "buildd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "buildd.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* Every object's labels: (dict "ctx" $ "component" "broker"); component may be empty. */}}
{{- define "buildd.labels" -}}
helm.sh/chart: {{ include "buildd.chart" .ctx }}
{{ include "buildd.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: buildd
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* repository:tag of an image: (dict "ctx" $ "image" .Values.image). */}}
{{- define "buildd.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{/*
image and imagePullPolicy of a container of the services image: image,
overridden field by field by <component>.image; (dict "ctx" $ "component" "broker").
*/}}
{{- define "buildd.serviceImage" -}}
{{- $image := mergeOverwrite (deepCopy .ctx.Values.image) ((index .ctx.Values .component).image | default dict) -}}
image: {{ include "buildd.image" (dict "ctx" .ctx "image" $image) }}
imagePullPolicy: {{ $image.pullPolicy }}
{{- end -}}

{{- define "buildd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "buildd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "buildd.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* ---- Secrets ------------------------------------------------------------ */}}

{{/* The Secret the chart generates the keys into. */}}
{{- define "buildd.keysSecretName" -}}
{{- printf "%s-keys" (include "buildd.fullname" .) -}}
{{- end -}}

{{/* The Secret the chart writes database.url into. */}}
{{- define "buildd.databaseSecretName" -}}
{{- printf "%s-database" (include "buildd.fullname" .) -}}
{{- end -}}

{{/* Each key: its file under /etc/buildd/secrets (and its entry in the generated Secret), and the flag that reads it. */}}
{{- define "buildd.secretFiles" -}}
masterKey: master-key
keyPepper: key-pepper
sessionKey: session-key
serviceKey: service-key
adminKey: admin-key
runnerKey: runner-key
{{- end -}}

{{/* Do any keys come from the chart's own Secret? (The runners' only with runners.) */}}
{{- define "buildd.generatesKeys" -}}
{{- range $name, $s := .Values.secrets -}}
{{- if and (not $s.existingSecret) (or $.Values.runner.enabled (ne $name "runnerKey")) -}}yes{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A projected volume "secrets" holding the named keys as files, each from its
own Secret: (dict "ctx" $ "keys" (list "masterKey" ...) "database" true).
With "database", the database URL too, from "databaseSecret" when given
(the migrations' hook copy) or else from where the Deployments read it.
*/}}
{{- define "buildd.secretsVolume" -}}
{{- $ctx := .ctx -}}
{{- $files := include "buildd.secretFiles" $ctx | fromYaml -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
{{- if .database }}
{{- $db := $ctx.Values.database }}
      - secret:
          name: {{ .databaseSecret | default ($db.existingSecret | default (include "buildd.databaseSecretName" $ctx)) }}
          items:
            - key: {{ ternary $db.existingSecretKey "url" (and (not .databaseSecret) (ne $db.existingSecret "")) }}
              path: database-url
{{- end }}
{{- range .keys }}
{{- $s := index $ctx.Values.secrets . }}
      - secret:
          name: {{ $s.existingSecret | default (include "buildd.keysSecretName" $ctx) }}
          items:
            - key: {{ ternary $s.key (index $files .) (ne $s.existingSecret "") }}
              path: {{ index $files . }}
{{- end }}
{{- end -}}

{{/* The PostgreSQL CA volume, when database.caSecret names one. */}}
{{- define "buildd.databaseCaVolume" -}}
{{- with .Values.database.caSecret -}}
{{- if .name -}}
- name: postgres-ca
  secret:
    secretName: {{ .name }}
    defaultMode: 0444
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "buildd.databaseCaMount" -}}
{{- if .Values.database.caSecret.name -}}
- name: postgres-ca
  mountPath: /etc/buildd/postgres
  readOnly: true
{{- end -}}
{{- end -}}

{{/* ---- TLS ---------------------------------------------------------------- */}}

{{/* The certificate Secret of a component: (dict "ctx" $ "component" "broker"). */}}
{{- define "buildd.tlsSecretName" -}}
{{- if .ctx.Values.tls.certManager.enabled -}}
{{- printf "%s-%s-tls" (include "buildd.fullname" .ctx) .component -}}
{{- else -}}
{{- $name := index .ctx.Values.tls.secrets .component -}}
{{- required (printf "tls.secrets.%s: name the %s's certificate Secret (or turn tls.certManager on)" .component .component) $name -}}
{{- end -}}
{{- end -}}

{{- define "buildd.tlsVolume" -}}
{{- if .ctx.Values.tls.enabled -}}
- name: tls
  secret:
    secretName: {{ include "buildd.tlsSecretName" . }}
    defaultMode: 0440
{{- end -}}
{{- end -}}

{{- define "buildd.tlsMount" -}}
{{- if .Values.tls.enabled -}}
- name: tls
  mountPath: /etc/buildd/tls
  readOnly: true
{{- end -}}
{{- end -}}

{{/* Flags of a gRPC server (common/tls.cc). */}}
{{- define "buildd.tlsServerArgs" -}}
{{- if .Values.tls.enabled -}}
- --tls_cert=/etc/buildd/tls/tls.crt
- --tls_key=/etc/buildd/tls/tls.key
{{- if .Values.tls.mutual }}
- --tls_client_ca=/etc/buildd/tls/ca.crt
{{- end }}
{{- end -}}
{{- end -}}

{{/* Flags of a gRPC client (common/tls.cc). */}}
{{- define "buildd.tlsClientArgs" -}}
{{- if .Values.tls.enabled -}}
- --tls_ca=/etc/buildd/tls/ca.crt
{{- if .Values.tls.mutual }}
- --tls_client_cert=/etc/buildd/tls/tls.crt
- --tls_client_key=/etc/buildd/tls/tls.key
{{- end }}
{{- end -}}
{{- end -}}

{{/* ---- Addresses and probes ---------------------------------------------- */}}

{{- define "buildd.accountsAddr" -}}
{{- printf "%s-accounts:%d" (include "buildd.fullname" .) (int .Values.accounts.port) -}}
{{- end -}}

{{- define "buildd.brokerAddr" -}}
{{- printf "%s-broker:%d" (include "buildd.fullname" .) (int .Values.broker.port) -}}
{{- end -}}

{{/*
Probes of a gRPC service: (dict "ctx" $ "port" 7002). The kubelet's gRPC
probe asks grpc.health.v1 in plaintext; with TLS it cannot, so the probes
ask the metrics port's /health instead (the same check: the database is
reachable and the service is not draining). A startup probe gives the
service its 30 s of waiting for the database before liveness counts.
*/}}
{{- define "buildd.grpcProbes" -}}
{{- $check := dict -}}
{{- if .ctx.Values.tls.enabled -}}
{{- $check = dict "httpGet" (dict "path" "/health" "port" "metrics") -}}
{{- else -}}
{{- $check = dict "grpc" (dict "port" (int .port)) -}}
{{- end -}}
startupProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 2
  failureThreshold: 30
readinessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* A NetworkPolicy peer: the pods of a component, (dict "ctx" $ "component" "broker"). */}}
{{- define "buildd.peer" -}}
- podSelector:
    matchLabels:
      {{- include "buildd.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Prefer pods of one component on different nodes, unless affinity is given. */}}
{{- define "buildd.affinity" -}}
{{- if .affinity -}}
{{- toYaml .affinity -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "buildd.selectorLabels" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Where a service's pods go: affinity (by default apart), nodeSelector, tolerations; (dict "ctx" $ "component" "broker"). */}}
{{- define "buildd.scheduling" -}}
{{- $c := index .ctx.Values .component -}}
affinity:
  {{- include "buildd.affinity" (dict "ctx" .ctx "component" .component "affinity" $c.affinity) | nindent 2 }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The runner's pod termination grace: drain, then cancel, then a margin for the last events. */}}
{{- define "buildd.runnerGraceSeconds" -}}
{{- add .Values.runner.drainTimeoutSeconds .Values.runner.cancelGraceSeconds 30 -}}
{{- end -}}
