{{/*
A file of manifests/ (files/base and files/components are symlinks to manifests/base and
manifests/components), as kubectl apply -k applies it, in the injector's namespace: every mention of
chaperone-system (metadata, RBAC subjects, the webhook's and the policies' lists of namespaces never
injected) names the release's namespace instead. The chart has no copy of its own to drift.
*/}}
{{- define "chaperone.manifest" -}}
{{- $text := .root.Files.Get .file -}}
{{- if not $text -}}
{{- fail (printf "%s is missing from the chart: files/base and files/components link to manifests/, so install from a checkout of the repository or from a chart that `helm package` made there" .file) -}}
{{- end -}}
{{- $text | replace "chaperone-system" .root.Release.Namespace -}}
{{- end -}}

{{/* The same file's one object, with labels added (a Prometheus selects monitors and rules by label). */}}
{{- define "chaperone.manifestLabelled" -}}
{{- $object := include "chaperone.manifest" . | fromYaml -}}
{{- $_ := set $object.metadata "labels" (merge (dict) $object.metadata.labels .labels) -}}
{{- toYaml $object -}}
{{- end -}}
