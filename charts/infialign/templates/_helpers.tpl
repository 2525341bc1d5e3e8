{{/* The release's full name, cut to 52 characters so suffixes like -mlflow stay valid names. */}}
{{- define "infialign.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "infialign.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "infialign.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "infialign.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "infialign.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "infialign.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "infialign.mlflowName" -}}
{{- printf "%s-mlflow" (include "infialign.fullname" .) -}}
{{- end -}}

{{/* The tracking URI runs get when their spec leaves it empty. */}}
{{- define "infialign.trackingUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "infialign.mlflowName" .) .Release.Namespace (int .Values.mlflow.port) -}}
{{- else -}}
{{- .Values.tracking.defaultUri -}}
{{- end -}}
{{- end -}}

{{/* The operator's permissions: least privilege, and no Secrets (pods get them by secretKeyRef). */}}
{{- define "infialign.operatorRules" -}}
- apiGroups: ["infialign.dev"]
  resources: ["alignmentruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["infialign.dev"]
  resources: ["alignmentruns/status"]
  verbs: ["get", "patch"]
# Children carry an ownerReference with blockOwnerDeletion: true. With the OwnerReferencesPermissionEnforcement
# admission plugin (on by default in OpenShift) that needs update on the owner's finalizers, else every create is 403.
- apiGroups: ["infialign.dev"]
  resources: ["alignmentruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{- define "infialign.minioName" -}}
{{- printf "%s-minio" (include "infialign.fullname" .) -}}
{{- end -}}

{{/* The MinIO credentials Secret: the user's, or the one the chart generates. */}}
{{- define "infialign.minioSecret" -}}
{{- default (include "infialign.minioName" .) .Values.minio.existingSecret -}}
{{- end -}}

{{- define "infialign.minioEndpoint" -}}
{{- printf "http://%s.%s.svc:9000" (include "infialign.minioName" .) .Release.Namespace -}}
{{- end -}}

{{/* The artifact store the operator reads and the helm test run writes: artifacts.s3, else the chart's MinIO. */}}
{{- define "infialign.s3Endpoint" -}}
{{- if .Values.artifacts.s3.endpoint -}}
{{- .Values.artifacts.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- include "infialign.minioEndpoint" . -}}
{{- end -}}
{{- end -}}

{{- define "infialign.s3Secret" -}}
{{- if .Values.artifacts.s3.secretName -}}
{{- .Values.artifacts.s3.secretName -}}
{{- else if and .Values.minio.enabled (not .Values.artifacts.s3.endpoint) -}}
{{- include "infialign.minioSecret" . -}}
{{- end -}}
{{- end -}}

{{/* MLflow's own S3 access: mlflow.s3, else the artifact store's. */}}
{{- define "infialign.mlflowS3Endpoint" -}}
{{- default (include "infialign.s3Endpoint" .) .Values.mlflow.s3.endpoint -}}
{{- end -}}

{{- define "infialign.mlflowS3Secret" -}}
{{- default (include "infialign.s3Secret" .) .Values.mlflow.s3.secretName -}}
{{- end -}}

{{/* Where MLflow proxies artifacts to: the value, else the `mlflow` bucket of the chart's MinIO, else the volume. */}}
{{- define "infialign.mlflowArtifacts" -}}
{{- if .Values.mlflow.artifactsDestination -}}
{{- .Values.mlflow.artifactsDestination -}}
{{- else if .Values.minio.enabled -}}
s3://mlflow/artifacts
{{- else -}}
/mlflow/artifacts
{{- end -}}
{{- end -}}

{{/* Whether the operator watches the release namespace (the helm test run lives there). */}}
{{- define "infialign.watchesReleaseNamespace" -}}
{{- if or (not .Values.operator.watchNamespaces) (has .Release.Namespace .Values.operator.watchNamespaces) -}}true{{- end -}}
{{- end -}}
