{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "ltr-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already contains the chart name. */}}
{{- define "ltr-serving.fullname" -}}
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

{{- define "ltr-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "ltr-serving.labels" -}}
helm.sh/chart: {{ include "ltr-serving.chart" . }}
{{ include "ltr-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ltr-serving
{{- end }}

{{/* Labels selecting the operator pod. */}}
{{- define "ltr-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ltr-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The selector labels as K=V,K=V (the operator's --operator-pod-labels: its NetworkPolicy peer). */}}
{{- define "ltr-serving.selectorLabelList" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=operator" (include "ltr-serving.name" .) .Release.Name }}
{{- end }}

{{- define "ltr-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ltr-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "ltr-serving.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ltr-serving.sidecarImage" -}}
{{- $img := .Values.operator.sidecarImage }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}

{{/* True ("true") when the operator watches only operator.watchNamespaces. */}}
{{- define "ltr-serving.namespaced" -}}
{{- if .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}
