{{/* The runners: how they are scaled, and their pod, the same under a Deployment or a KEDA ScaledJob. */}}

{{/* "true" when KEDA starts a Job per task (runner.autoscaling.kind ScaledJob), else empty. */}}
{{- define "buildd.runnerJobs" -}}
{{- $c := .Values.runner -}}
{{- if and $c.enabled $c.autoscaling.enabled (eq $c.autoscaling.kind "ScaledJob") }}true{{ end -}}
{{- end -}}

{{/* "true" when the broker serves KEDA's external scaler (autoscaling without Prometheus), else empty. */}}
{{- define "buildd.scalerServed" -}}
{{- $c := .Values.runner -}}
{{- if and $c.enabled $c.autoscaling.enabled (not $c.autoscaling.prometheus.serverAddress) }}true{{ end -}}
{{- end -}}

{{/* The broker's scaler, as KEDA's operator dials it from its own namespace. */}}
{{- define "buildd.scalerAddr" -}}
{{- printf "%s-broker.%s.svc.%s:%d" (include "buildd.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.broker.scalerPort) -}}
{{- end -}}

{{/*
The runner pod template (metadata and spec). Under a ScaledJob the pod
takes one task and exits (--once), and is not restarted.
*/}}
{{- define "buildd.runnerPod" -}}
{{- $c := .Values.runner }}
{{- $component := dict "ctx" $ "component" "runner" }}
{{- $jobs := include "buildd.runnerJobs" . }}
{{- $claim := $c.workDir.persistence.existingClaim | default (printf "%s-runner-work" (include "buildd.fullname" .)) -}}
metadata:
  labels:
    {{- include "buildd.selectorLabels" $component | nindent 4 }}
    {{- with $c.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $c.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if $jobs }}
  restartPolicy: Never
  {{- end }}
  serviceAccountName: {{ include "buildd.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with include "buildd.imagePullSecrets" . }}{{ . | nindent 2 }}{{ end }}
  # Draining, the runner tells the broker, which gives it no new task; its
  # running tasks get runner.drainTimeoutSeconds (--drain_timeout_ms), then
  # are canceled (--cancel_grace_ms). The pod gets that long and a margin
  # before it is killed.
  terminationGracePeriodSeconds: {{ include "buildd.runnerGraceSeconds" . }}
  securityContext:
    {{- toYaml $c.podSecurityContext | nindent 4 }}
  containers:
    - name: runner
      image: {{ include "buildd.image" (dict "ctx" $ "image" $c.image) }}
      imagePullPolicy: {{ $c.image.pullPolicy }}
      command: [/usr/bin/buildd-runner]
      args:
        - --server={{ include "buildd.brokerAddr" . }}
        - --api_key_file=/etc/buildd/secrets/runner-key
        - --listen=0.0.0.0:{{ .Values.metrics.port }}
        - --work_dir=/var/lib/buildd-runner
        - --max_tasks={{ $c.maxTasks }}
        {{- if $jobs }}
        - --once
        {{- end }}
        {{- with $c.idleExit }}
        - --idle_exit={{ . }}
        {{- end }}
        - --sandbox={{ $c.sandbox }}
        - --drain_timeout_ms={{ mul $c.drainTimeoutSeconds 1000 }}
        - --cancel_grace_ms={{ mul $c.cancelGraceSeconds 1000 }}
        - {{ printf "--commit_author=%s" $c.commitAuthor | quote }}
        - --log_level={{ .Values.logLevel }}
        {{- with $c.labels }}
        - {{ printf "--labels=%s" (join "," .) | quote }}
        {{- end }}
        {{- with $c.workspace }}
        - {{ printf "--workspace=%s" . | quote }}
        {{- end }}
        {{- with $c.taskEnv }}
        - {{ printf "--task_env=%s" (join "," .) | quote }}
        {{- end }}
        {{- with include "buildd.tlsClientArgs" . }}{{ . | nindent 8 }}{{ end }}
        {{- with $c.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        # The root file system is read-only: the agents' configuration
        # (~/.claude, ~/.codex) and git's live in an emptyDir.
        - name: HOME
          value: /home/buildd
        {{- with $c.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
      readinessProbe:
        httpGet:
          path: /health
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 3
      livenessProbe:
        httpGet:
          path: /health
          port: metrics
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      securityContext:
        {{- toYaml $c.securityContext | nindent 8 }}
      {{- with $c.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: secrets
          mountPath: /etc/buildd/secrets
          readOnly: true
        - name: work
          mountPath: /var/lib/buildd-runner
        - name: home
          mountPath: /home/buildd
        - name: tmp
          mountPath: /tmp
        {{- with include "buildd.tlsMount" . }}{{ . | nindent 8 }}{{ end }}
  volumes:
    {{- include "buildd.secretsVolume" (dict "ctx" $ "keys" (list "runnerKey")) | nindent 4 }}
    - name: work
      {{- if $c.workDir.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $claim }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ $c.workDir.sizeLimit }}
      {{- end }}
    - name: home
      emptyDir:
        sizeLimit: 1Gi
    - name: tmp
      emptyDir:
        sizeLimit: {{ $c.tmpSizeLimit }}
    {{- with include "buildd.tlsVolume" $component }}{{ . | nindent 4 }}{{ end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
