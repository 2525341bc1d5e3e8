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
