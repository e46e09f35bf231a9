{{/* The release's full name, capped at the 63 characters of a DNS label. */}}
{{- define "beaconlake.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "beaconlake.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "collector"). */}}
{{- define "beaconlake.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "beaconlake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "beaconlake.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "beaconlake.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pod annotations shared by both components: the config's checksum (a config change rolls
     the pods) and, when asked, Prometheus' scrape hints. */}}
{{- define "beaconlake.podAnnotations" -}}
checksum/config: {{ .Values.config | sha256sum }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* The beaconlake container of one component: call with (dict "root" $ "component" "collector"
     "values" .Values.collector). */}}
{{- define "beaconlake.container" -}}
- name: beaconlake
  image: {{ include "beaconlake.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args: ["--role", {{ .component | quote }}]
  env:
    # Stable per pod (a StatefulSet's pods keep their names): leases and heartbeats are keyed by it.
    - name: BEACONLAKE__NODE__ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- with .root.Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  envFrom:
    - secretRef:
        name: {{ .root.Values.existingSecret }}
  ports:
    - name: http
      containerPort: 8080
      protocol: TCP
  readinessProbe:
    httpGet:
      path: {{ .values.readinessPath }}
      port: http
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: {{ .values.livenessPath }}
      port: http
    initialDelaySeconds: 30
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 6
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/beaconlake
      readOnly: true
    - name: data
      mountPath: /var/lib/beaconlake
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{- define "beaconlake.podCommon" -}}
serviceAccountName: {{ include "beaconlake.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
