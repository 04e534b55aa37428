{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "multitenant-dicom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name, the prefix of every object name. Truncated to 63 characters; when the
release name already contains the chart name it is used alone.
*/}}
{{- define "multitenant-dicom.fullname" -}}
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

{{/*
Chart name and version, as in the helm.sh/chart label.
*/}}
{{- define "multitenant-dicom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that identify this release's objects, without the component.
*/}}
{{- define "multitenant-dicom.baseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "multitenant-dicom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the operator pod. They never change during upgrades (selectors are immutable).
The component matters: the operator's tenant pods also carry app.kubernetes.io/name
multitenant-dicom, and a tenant resource may share the release's name.
*/}}
{{- define "multitenant-dicom.selectorLabels" -}}
{{ include "multitenant-dicom.baseSelectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels common to every object of the release (Helm's recommended set). Objects that are not
the operator set their own app.kubernetes.io/component.
*/}}
{{- define "multitenant-dicom.baseLabels" -}}
helm.sh/chart: {{ include "multitenant-dicom.chart" . }}
app.kubernetes.io/name: {{ include "multitenant-dicom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: multitenant-dicom
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the operator's own objects (Deployment, ServiceAccount, RBAC, Service).
*/}}
{{- define "multitenant-dicom.labels" -}}
{{ include "multitenant-dicom.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "multitenant-dicom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "multitenant-dicom.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is given, else repository:tag (tag defaults
to the chart's appVersion).
*/}}
{{- define "multitenant-dicom.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list (empty for scope "all"). Use with
fromJsonArray.
*/}}
{{- define "multitenant-dicom.watchedNamespaces" -}}
{{- if eq .Values.watch.scope "namespace" }}
{{- list .Release.Namespace | toJson }}
{{- else if eq .Values.watch.scope "namespaces" }}
{{- if not .Values.watch.namespaces }}
{{- fail "watch.namespaces must list at least one namespace when watch.scope is \"namespaces\"" }}
{{- end }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/*
The operator's rules in each namespace it watches. Mirror of NAMESPACED_RULES in
operator/rbac.py: tests/chart compares the two, so edit both together.
*/}}
{{- define "multitenant-dicom.namespacedRules" -}}
# kopf posts handler logs and the operator's kopf.info/warn calls as Events.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# kopf watches the custom resources and patches its progress annotations and the status.
- apiGroups: [mtdicom.io]
  resources: [multitenantdicomservers]
  verbs: [list, watch, patch]
- apiGroups: [mtdicom.io]
  resources: [multitenantdicomservers/status]
  verbs: [patch]
# Lets the operator set blockOwnerDeletion on children where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: [mtdicom.io]
  resources: [multitenantdicomservers/finalizers]
  verbs: [update]
# The children of each tenant server: ConfigMap, Service, Deployment.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
{{- end }}

{{/*
The operator's cluster-wide rules, whatever it watches. Mirror of CLUSTER_RULES in
operator/rbac.py.
*/}}
{{- define "multitenant-dicom.clusterRules" -}}
# kopf lists and watches CRDs to notice its resource appearing or vanishing.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# With --namespace, kopf lists and watches namespaces to follow them appearing; without
# the grant it retries the refused list for about a minute at every start.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
Labels the operator puts on every tenant-server pod (operator/naming.py child_labels); the
PodMonitor and the metrics Services select by them. tests/chart checks them against the
operator's builders.
*/}}
{{- define "multitenant-dicom.tenantSelectorLabels" -}}
app.kubernetes.io/component: tenant-server
app.kubernetes.io/managed-by: mtdicom-operator
{{- end }}
