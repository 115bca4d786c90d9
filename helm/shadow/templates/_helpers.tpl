{{/*
Names, labels and the shadow container. The container and its volumes are named
templates so a team in sidecar mode includes exactly what standalone mode runs:

  containers:
    - name: api
      ...
    {{- include "shadow.sidecarContainer" .Subcharts.shadow | nindent 4 }}
  volumes:
    {{- include "shadow.sidecarVolumes" .Subcharts.shadow | nindent 4 }}

Every template below takes the shadow chart's own context (`.` inside this chart,
`.Subcharts.shadow` from a parent chart that depends on it).
*/}}

{{- define "shadow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shadow.fullname" -}}
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

{{- define "shadow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "shadow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shadow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shadow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The pods carrying the shadow container: ours (standalone) or the API's (sidecar). */}}
{{- define "shadow.podSelector" -}}
{{- if eq .Values.mode "sidecar" }}
{{- toYaml .Values.sidecar.podSelector }}
{{- else }}
{{- include "shadow.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "shadow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "shadow.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "shadow.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}

{{- define "shadow.adminSecret" -}}
{{- default (printf "%s-admin" (include "shadow.fullname" .)) .Values.adminToken.existingSecret.name }}
{{- end }}

{{- define "shadow.gateConfigMap" -}}
{{- default (printf "%s-gate" (include "shadow.fullname" .)) .Values.gate.existingConfigMap }}
{{- end }}

{{/* Where the gate criteria are mounted: outside the rules directory, whose every *.yaml is a rule file. */}}
{{- define "shadow.gateDir" -}}
/etc/shadow/gate
{{- end }}

{{/* The chart's own gate criteria (files/gate.yaml = rules/gate.yaml); the gate ConfigMap's data. */}}
{{- define "shadow.gateData" -}}
{{- if not .Values.demo }}
{{- fail "gate: set gate.existingConfigMap to your cutover criteria (or gate.enabled=false); the chart's own files/gate.yaml is the marketplace demo's: set demo=true to deploy it" }}
{{- end }}
{{- $criteria := .Files.Get "files/gate.yaml" }}
{{- if not $criteria }}
{{- fail "gate: the chart has no files/gate.yaml; run scripts/sync-chart-files, set gate.existingConfigMap or gate.enabled=false" }}
{{- end }}
{{- dict .Values.gate.key $criteria | toYaml }}
{{- end }}

{{/* The chart's own rule files (files/rules/*.yaml); the rules ConfigMap's data. */}}
{{- define "shadow.rulesData" -}}
{{- if not .Values.demo }}
{{- fail "rules: set rules.existingConfigMap to the ConfigMap holding your rule files; the chart's own files/rules/ are the marketplace demo's: set demo=true to deploy them" }}
{{- end }}
{{- (.Files.Glob "files/rules/*.yaml").AsConfig }}
{{- end }}

{{/*
Pod annotations for the shadow pods. With reload=watch the proxy follows ConfigMap
edits live; otherwise a checksum of the chart's rules rolls the pods on a rule change.
The gate criteria are read at start only: a checksum of the chart's gate file always
rolls the pods when it changes.
(An existing ConfigMap is not visible to the chart: roll the pods yourself or use watch.)
*/}}
{{- define "shadow.sidecarPodAnnotations" -}}
{{- if and (ne .Values.config.reload "watch") (not .Values.rules.existingConfigMap) }}
checksum/shadow-rules: {{ include "shadow.rulesData" . | sha256sum }}
{{- end }}
{{- if and .Values.gate.enabled (not .Values.gate.existingConfigMap) }}
checksum/shadow-gate: {{ include "shadow.gateData" . | sha256sum }}
{{- end }}
{{- end }}

{{- define "shadow.env" -}}
- name: SHADOW_UPSTREAM
  value: {{ .Values.upstream.url | quote }}
- name: SHADOW_RULES
  value: /etc/shadow/rules
- name: SHADOW_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.ports.proxy) | quote }}
- name: SHADOW_ADMIN_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
- name: SHADOW_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "shadow.adminSecret" . | quote }}
      key: {{ .Values.adminToken.existingSecret.key | quote }}
{{- with .Values.postgres.existingSecret }}
{{- if .name }}
- name: SHADOW_PG
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- with .Values.mongo.existingSecret }}
{{- if .name }}
- name: SHADOW_MONGO
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- $mongoDb := .Values.config.mongoDb | default (ternary "marketplace" "" .Values.demo) }}
{{- if and .Values.mongo.existingSecret.name (not $mongoDb) }}
{{- fail "config.mongoDb: the MongoDB database name is required with mongo.existingSecret" }}
{{- end }}
{{- with $mongoDb }}
- name: SHADOW_MONGO_DB
  value: {{ . | quote }}
{{- end }}
{{- include "shadow.evidenceEnv" . }}
{{- if .Values.evidence.existingSecret.name }}
- name: SHADOW_EVIDENCE_RETENTION
  value: {{ .Values.evidence.retentionDays | toString | quote }}
- name: SHADOW_EVIDENCE_POD
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- with .Values.config }}
- name: SHADOW_QUEUE_SIZE
  value: {{ .queueSize | int | quote }}
- name: SHADOW_WORKERS
  value: {{ .workers | int | quote }}
- name: SHADOW_BATCH_SIZE
  value: {{ .batchSize | int | quote }}
- name: SHADOW_MAX_BODY_BYTES
  value: {{ .maxBodyBytes | int | quote }}
- name: SHADOW_SOURCE_TIMEOUT
  value: {{ .sourceTimeout | toString | quote }}
- name: SHADOW_RATE_LIMIT
  value: {{ .rateLimit | toString | quote }}
- name: SHADOW_UPSTREAM_TIMEOUT
  value: {{ .upstreamTimeout | toString | quote }}
- name: SHADOW_DRAIN_TIMEOUT
  value: {{ .drainTimeout | toString | quote }}
- name: SHADOW_RELOAD
  value: {{ .reload | quote }}
{{- if .otlpEndpoint }}
- name: SHADOW_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
- name: SHADOW_MISMATCH_LOG
  value: {{ .mismatchLog | quote }}
- name: SHADOW_LOG_LEVEL
  value: {{ .logLevel | quote }}
- name: SHADOW_ENGINE
  value: {{ .engine | quote }}
- name: SHADOW_SHADOW_PROCESS
  value: {{ .shadowProcess | quote }}
- name: SHADOW_SHADOW_NICE
  value: {{ .shadowNice | int | quote }}
- name: SHADOW_EXPLAIN_RATE
  value: {{ .explainRate | toString | quote }}
- name: SHADOW_RECENT_MISMATCHES
  value: {{ .recentMismatches | int | quote }}
- name: SHADOW_MAX_REQUEST_LINE
  value: {{ .maxRequestLine | int | quote }}
- name: SHADOW_MAX_HEADER_LINE
  value: {{ .maxHeaderLine | int | quote }}
- name: SHADOW_MAX_HEADER_BLOCK
  value: {{ .maxHeaderBlock | int | quote }}
- name: SHADOW_MAX_HEADER_COUNT
  value: {{ .maxHeaderCount | int | quote }}
- name: SHADOW_HEADER_TIMEOUT
  value: {{ .headerTimeout | toString | quote }}
- name: SHADOW_KEEPALIVE_TIMEOUT
  value: {{ .keepaliveTimeout | toString | quote }}
- name: SHADOW_MAX_CONNECTIONS
  value: {{ .maxConnections | int | quote }}
- name: SHADOW_ADMIN_MAX_CONNECTIONS
  value: {{ .adminMaxConnections | int | quote }}
- name: SHADOW_FORWARDED_HEADERS
  value: {{ .forwardedHeaders | quote }}
- name: SHADOW_TRACE_METHOD
  value: {{ .traceMethod | quote }}
- name: SHADOW_DOT_SEGMENTS
  value: {{ .dotSegments | quote }}
{{- end }}
{{- if .Values.gate.enabled }}
- name: SHADOW_GATE_CRITERIA
  value: {{ printf "%s/gate.yaml" (include "shadow.gateDir" .) | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The shadow container, as one item of a pod's `containers:` list. */}}
{{- define "shadow.sidecarContainer" -}}
- name: shadow
  image: {{ include "shadow.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  env:
    {{- include "shadow.env" . | nindent 4 }}
  ports:
    - name: shadow-proxy
      containerPort: {{ .Values.ports.proxy }}
      protocol: TCP
    - name: shadow-admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: shadow-admin
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: shadow-admin
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  {{- if .Values.preStopSleepSeconds }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", "{{ .Values.preStopSleepSeconds }}"]
  {{- end }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ .Values.runAsUser }}
    runAsGroup: {{ .Values.runAsGroup }}
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    privileged: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: shadow-rules
      mountPath: /etc/shadow/rules
      readOnly: true
    {{- if .Values.gate.enabled }}
    - name: shadow-gate
      mountPath: {{ include "shadow.gateDir" . }}
      readOnly: true
    {{- end }}
    - name: shadow-tmp
      mountPath: /tmp
{{- end }}

{{/* The shadow container's volumes, as items of a pod's `volumes:` list. */}}
{{- define "shadow.sidecarVolumes" -}}
- name: shadow-rules
  configMap:
    name: {{ include "shadow.rulesConfigMap" . }}
{{- if .Values.gate.enabled }}
- name: shadow-gate
  configMap:
    name: {{ include "shadow.gateConfigMap" . }}
    items:
      - key: {{ .Values.gate.key | quote }}
        path: gate.yaml
{{- end }}
- name: shadow-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{/* SHADOW_EVIDENCE from the evidence store's Secret (nothing when it is off), and
SHADOW_REDACTION_KEY from the redaction key's Secret (nothing when it is unset): every
process that writes masked values to the store gets the same key. */}}
{{- define "shadow.evidenceEnv" -}}
{{- with .Values.evidence.existingSecret }}
{{- if .name }}
- name: SHADOW_EVIDENCE
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- with .Values.redaction.existingSecret }}
{{- if .name }}
- name: SHADOW_REDACTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shadow.consoleSelectorLabels" -}}
app.kubernetes.io/name: {{ include "shadow.name" . }}-console
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
