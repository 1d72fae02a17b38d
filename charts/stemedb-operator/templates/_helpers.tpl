{{/* Chart name, truncated to a DNS label. */}}
{{- define "stemedb-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name if it holds the chart name. */}}
{{- define "stemedb-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stemedb-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stemedb-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stemedb-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stemedb-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.annotations: commonAnnotations and the object's own (dict "root" . "extra" map). */}}
{{- define "stemedb-operator.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (deepCopy (default dict .root.Values.commonAnnotations)) }}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "stemedb-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stemedb-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespaces watched in namespaced mode (default: the release namespace). */}}
{{- define "stemedb-operator.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson .Values.watch.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "stemedb-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The one source of the operator's permissions: files/rbac-rules.yaml. */}}
{{- define "stemedb-operator.rbacRules" -}}
{{- $rules := .Files.Get "files/rbac-rules.yaml" | fromYamlArray }}
{{- if not $rules }}
{{- fail "files/rbac-rules.yaml is empty or not a YAML list of PolicyRules" }}
{{- end }}
{{- with .Values.rbac.secretNames }}
{{- range $rules }}
{{- if has "secrets" .resources }}
{{- $_ := set . "resourceNames" $.Values.rbac.secretNames }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
Denied destinations as NetworkPolicy ipBlocks: everywhere except the operator's
built-in deny list (controller/domain/destinations.py DEFAULT_DENY), loopback
when destinations.denyLoopback, and destinations.deny; or only
destinations.allow when it is set. A test compares this list with the code's.
*/}}
{{- define "stemedb-operator.deniedDestinations" -}}
{{- $deny := list "169.254.0.0/16" "fe80::/10" "fd00:ec2::254/128" "100.100.100.200/32" "0.0.0.0/8" "::/128" -}}
{{- if .Values.destinations.denyLoopback -}}
{{- $deny = concat $deny (list "127.0.0.0/8" "::1/128") -}}
{{- end -}}
{{- concat $deny .Values.destinations.deny | toJson -}}
{{- end -}}

{{- define "stemedb-operator.egressAnywhereBut" -}}
{{- $deny := include "stemedb-operator.deniedDestinations" . | fromJsonArray -}}
{{- $v4 := list -}}
{{- $v6 := list -}}
{{- range $deny -}}
{{- $c := ternary . (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) (contains "/" .) -}}
{{- if contains ":" $c -}}{{- $v6 = append $v6 $c -}}{{- else -}}{{- $v4 = append $v4 $c -}}{{- end -}}
{{- end -}}
{{- if .Values.destinations.allow -}}
{{- range .Values.destinations.allow }}
- ipBlock:
    cidr: {{ ternary . (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) (contains "/" .) }}
{{- end }}
{{- else -}}
- ipBlock:
    cidr: 0.0.0.0/0
    except: {{ $v4 | toJson }}
- ipBlock:
    cidr: ::/0
    except: {{ $v6 | toJson }}
{{- end -}}
{{- end -}}

{{/* The leader election Lease's name (`--leader-election-id`). */}}
{{- define "stemedb-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "stemedb-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Replicas: replicaCount with leader election or sharding, else at most 1 (two would act twice). */}}
{{- define "stemedb-operator.replicas" -}}
{{- if or .Values.leaderElection.enabled .Values.sharding.enabled }}{{ int .Values.replicaCount }}{{ else }}{{ min 1 (int .Values.replicaCount) }}{{ end }}
{{- end }}

{{/* Leader election is on unless sharding replaces it ("true" or ""). */}}
{{- define "stemedb-operator.elects" -}}
{{- if and .Values.leaderElection.enabled (not .Values.sharding.enabled) }}true{{ end }}
{{- end }}

{{/* The shard ring's name (`--shard-ring`): its Leases are <ring>-shard-<pod>. */}}
{{- define "stemedb-operator.shardRing" -}}
{{- default (include "stemedb-operator.fullname" .) .Values.sharding.ring }}
{{- end }}

{{/*
How the replicas agree on who acts, as one string: shard/<ring>, leader/<lease> or
single. Replicas of two different modes (or Leases, or rings) do not see each
other, so a change of it must never run old and new side by side.
*/}}
{{- define "stemedb-operator.haMode" -}}
{{- if .Values.sharding.enabled -}}
shard/{{ include "stemedb-operator.shardRing" . }}
{{- else if .Values.leaderElection.enabled -}}
leader/{{ include "stemedb-operator.leaseName" . }}
{{- else -}}
single
{{- end -}}
{{- end }}

{{/*
Whether this upgrade changes the HA mode of the running Deployment (read with
`lookup`; a Deployment of a chart before this annotation counts as single).
`helm template` and dry runs cannot look: false.
*/}}
{{- define "stemedb-operator.haModeChanges" -}}
{{- $live := lookup "apps/v1" "Deployment" .Release.Namespace (include "stemedb-operator.fullname" .) -}}
{{- if $live -}}
{{- $was := dig "metadata" "annotations" "stemedb.io/ha-mode" "single" $live -}}
{{- if ne $was (include "stemedb-operator.haMode" .) -}}true{{- end -}}
{{- end -}}
{{- end }}
