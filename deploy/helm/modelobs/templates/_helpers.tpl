{{/* Names, labels and the pieces every workload shares. */}}

{{- define "modelobs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "modelobs.name" (dict "root" $ "component" "agent-collector") */}}
{{- define "modelobs.name" -}}
{{- printf "%s-%s" (include "modelobs.fullname" .root) .component -}}
{{- end -}}

{{- define "modelobs.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "modelobs.labels" -}}
{{ include "modelobs.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "modelobs.serviceImage" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "modelobs.collectorImage" -}}
{{- printf "%s:%s" .Values.collectorImage.repository .Values.collectorImage.tag -}}
{{- end -}}

{{- define "modelobs.gatewayCollectorImage" -}}
{{- printf "%s:%s" .Values.gatewayCollector.image.repository .Values.gatewayCollector.image.tag -}}
{{- end -}}

{{/* A Go duration of one unit (500ms, 10s, 1m) in milliseconds. */}}
{{- define "modelobs.durationMs" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}{{ trimSuffix "ms" $d | int }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60000 }}
{{- else -}}{{ mul (trimSuffix "s" $d | int) 1000 }}
{{- end -}}
{{- end -}}

{{/* The services' OTLP destination: the agent on their own node. */}}
{{- define "modelobs.agentEndpoint" -}}
{{- printf "http://%s:4317" (include "modelobs.name" (dict "root" . "component" "agent-collector")) -}}
{{- end -}}

{{/* The headless Service the agents' DNS resolver reads. */}}
{{- define "modelobs.gatewayHeadless" -}}
{{- printf "%s-headless.%s.svc.cluster.local" (include "modelobs.name" (dict "root" . "component" "gateway-collector")) .Release.Namespace -}}
{{- end -}}

{{/* Environment of a modelobs service container: OTLP to the node's agent. */}}
{{- define "modelobs.serviceEnv" -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "modelobs.agentEndpoint" .root | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: "5000"
- name: OTEL_SEMCONV_STABILITY_OPT_IN
  value: http
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.instance.id=$(POD_NAME),k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME)"
- name: MODELOBS_ENVIRONMENT
  value: {{ .root.Values.environment | quote }}
{{- range $name, $value := .extra }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Pod identity from the downward API; listed before anything that refers to it. */}}
{{- define "modelobs.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}

{{/* Environment both collector tiers share: listeners on all interfaces of the pod,
     memory limits, log level. "modelobs.collectorEnv" (dict "tier" .Values.agentCollector) */}}
{{- define "modelobs.collectorEnv" -}}
- name: COLLECTOR_OTLP_GRPC_ENDPOINT
  value: "0.0.0.0:4317"
- name: COLLECTOR_OTLP_HTTP_ENDPOINT
  value: "0.0.0.0:4318"
- name: COLLECTOR_HEALTH_ENDPOINT
  value: "0.0.0.0:13133"
- name: COLLECTOR_SELF_METRICS_HOST
  value: "0.0.0.0"
- name: COLLECTOR_STORAGE_DIR
  value: /var/lib/otelcol/storage
- name: COLLECTOR_MEMORY_LIMIT_MIB
  value: {{ .tier.memoryLimitMiB | quote }}
- name: COLLECTOR_MEMORY_SPIKE_LIMIT_MIB
  value: {{ div .tier.memoryLimitMiB 5 | quote }}
- name: GOMEMLIMIT
  value: {{ printf "%dMiB" (int .tier.memoryLimitMiB) | quote }}
- name: COLLECTOR_LOG_LEVEL
  value: {{ .tier.logLevel | quote }}
{{- end -}}

{{/* The collector's health_check extension answers GET / on 13133. */}}
{{- define "modelobs.collectorProbes" -}}
livenessProbe:
  httpGet:
    path: /
    port: health
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /
    port: health
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/* True (non-empty) when the prediction store is a shared PostgreSQL database. */}}
{{- define "modelobs.sharedStore" -}}
{{- if or .Values.predictionStore.url .Values.predictionStore.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* MODELOBS_PREDICTION_DB of the model service and the monitor: the shared database (from
its Secret when one is named), else ``sqlite`` (a file in the pod's data directory). One
process in all is the only thing a per-pod SQLite file serves correctly. */}}
{{- define "modelobs.storeEnv" -}}
{{- $store := .Values.predictionStore -}}
{{- if $store.existingSecret }}
- name: MODELOBS_PREDICTION_DB
  valueFrom:
    secretKeyRef:
      name: {{ $store.existingSecret | quote }}
      key: {{ $store.existingSecretKey | quote }}
{{- else if $store.url }}
- name: MODELOBS_PREDICTION_DB
  value: {{ $store.url | quote }}
{{- else }}
{{- if or (gt (int .Values.modelService.replicas) 1) (gt (int .Values.modelService.workers) 1) }}
{{- fail "modelService.replicas or workers above 1 need a shared prediction store: set predictionStore.url (postgresql://...) or predictionStore.existingSecret" }}
{{- end }}
- name: MODELOBS_PREDICTION_DB
  value: /var/lib/modelobs/predictions.db
{{- end }}
{{- end -}}
