{{- /*
Shared pieces. Objects carry the same names and labels as config/; the chart adds only the labels in
"fia.helmLabels" (ignored by the test that compares the chart with config/default).
*/ -}}

{{- define "fia.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- /* The controller's image reference: repository and tag, the tag defaulting to appVersion. */ -}}
{{- define "fia.image" -}}
{{- $repo := required "image.repository is required" .c.image.repository -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .c.image.tag) -}}
{{- end -}}

{{- /*
A controller Deployment. Called with a dict: root (the chart's top-level object), name (the
Deployment, ServiceAccount and app label), c (the controller's values), data (mount a /data volume).
*/ -}}
{{- define "fia.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := .c -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    control-plane: controller
    {{- include "fia.helmLabels" $root | nindent 4 }}
spec:
  replicas: {{ $c.replicas }}
  selector:
    matchLabels:
      app: {{ .name }}
  template:
    metadata:
      labels:
        app: {{ .name }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8080"
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ .name }}
      terminationGracePeriodSeconds: 10
      securityContext:
        fsGroup: 1337
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: manager
          image: {{ include "fia.image" (dict "root" $root "c" $c) | quote }}
          imagePullPolicy: {{ $c.image.pullPolicy }}
          args:
            {{- if $v.watchAllNamespaces }}
            - --watch-all-namespaces
            {{- end }}
            - --log-level={{ $v.logLevel }}
            - --log-encoding={{ $v.logEncoding }}
            {{- with $v.leaderElection }}
            {{- if .enabled }}
            - --enable-leader-election
            {{- with .leaseDuration }}
            - --leader-election-lease-duration={{ . }}
            {{- end }}
            {{- with .renewDeadline }}
            - --leader-election-renew-deadline={{ . }}
            {{- end }}
            {{- with .retryPeriod }}
            - --leader-election-retry-period={{ . }}
            {{- end }}
            {{- end }}
            {{- end }}
            {{- range $c.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: RUNTIME_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - containerPort: 8080
              name: http-prom
              protocol: TCP
            - containerPort: 9440
              name: healthz
              protocol: TCP
          readinessProbe:
            httpGet:
              path: /readyz
              port: healthz
          livenessProbe:
            httpGet:
              path: /healthz
              port: healthz
          {{- with $c.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            runAsUser: 65534
            runAsGroup: 65534
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: temp
              mountPath: /tmp
            {{- if .data }}
            - name: data
              mountPath: /data
            {{- end }}
      volumes:
        - name: temp
          emptyDir: {}
        {{- if .data }}
        - name: data
          emptyDir: {}
        {{- end }}
{{- end -}}

{{- /*
ServiceAccount, leader-election Role and both bindings of a controller. Called with a dict: root,
prefix (image-reflector or image-automation). The ClusterRole is in the controller's own file.
*/ -}}
{{- define "fia.rbac" -}}
{{- $root := .root -}}
{{- $ns := $root.Release.Namespace -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .prefix }}-controller
  namespace: {{ $ns }}
  labels:
    {{- include "fia.helmLabels" $root | nindent 4 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .prefix }}-manager-rolebinding
  labels:
    {{- include "fia.helmLabels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .prefix }}-manager-role
subjects:
  - kind: ServiceAccount
    name: {{ .prefix }}-controller
    namespace: {{ $ns }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .prefix }}-leader-election-role
  namespace: {{ $ns }}
  labels:
    {{- include "fia.helmLabels" $root | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [""]
    resources: [configmaps/status]
    verbs: [get, update, patch]
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .prefix }}-leader-election-rolebinding
  namespace: {{ $ns }}
  labels:
    {{- include "fia.helmLabels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .prefix }}-leader-election-role
subjects:
  - kind: ServiceAccount
    name: {{ .prefix }}-controller
    namespace: {{ $ns }}
{{- end -}}

{{- /* Metrics Service and ServiceMonitor of a controller. Called with a dict: root, name. */ -}}
{{- define "fia.monitoring" -}}
{{- $root := .root -}}
{{- $sm := $root.Values.serviceMonitor -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}-metrics
  namespace: {{ $root.Release.Namespace }}
  labels:
    app: {{ .name }}
    {{- include "fia.helmLabels" $root | nindent 4 }}
spec:
  selector:
    app: {{ .name }}
  ports:
    - name: http-prom
      port: 8080
      targetPort: http-prom
      protocol: TCP
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    app: {{ .name }}
    {{- include "fia.helmLabels" $root | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      app: {{ .name }}
  endpoints:
    - port: http-prom
      path: /metrics
      {{- with $sm.interval }}
      interval: {{ . }}
      {{- end }}
{{- end -}}
