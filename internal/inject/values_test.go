package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// argsOf returns the args of container "s" of the patched pod, joined by "|".
func argsOf(t *testing.T, p *corev1.Pod) string {
	return strings.Join(container(t, p, "s").Args, "|")
}

func expectArgs(want string) func(t *testing.T, r *Result, p *corev1.Pod) {
	return func(t *testing.T, _ *Result, p *corev1.Pod) {
		t.Helper()
		if got := argsOf(t, p); got != want {
			t.Errorf("args = %q, want %q", got, want)
		}
	}
}

func TestPerPodValues(t *testing.T) {
	valuesPod := `
metadata:
  name: web-1
  generateName: web-
  namespace: team-a
  labels: {app.kubernetes.io/name: shop, tier: front}
  annotations: {sidecar.dev/inject: t, team: payments, t.param.sidecar.dev/level: debug}
spec:
  serviceAccountName: shop-sa
  containers: [{name: app, image: a}]
`
	runTable(t, []tableCase{
		{
			name:      "pod name, generateName, namespace and service account are substituted",
			pod:       valuesPod,
			templates: one(`  containers: [{name: s, image: s, args: ["{{ pod.name }}", "{{pod.generateName}}", "{{  pod.namespace }}", "{{ pod.serviceAccountName }}"]}]`),
			check:     expectArgs("web-1|web-|team-a|shop-sa"),
		},
		{
			name:      "labels and annotations are substituted by key, keys with dots and slashes included",
			pod:       valuesPod,
			templates: one(`  containers: [{name: s, image: s, args: ["{{ pod.labels.app.kubernetes.io/name }}", "{{ pod.labels.tier }}", "{{ pod.annotations.team }}"]}]`),
			check:     expectArgs("shop|front|payments"),
		},
		{
			name:      "a missing label or annotation substitutes the empty string",
			pod:       valuesPod,
			templates: one(`  containers: [{name: s, image: s, args: ["[{{ pod.labels.nope }}]", "[{{ pod.annotations.nope }}]"]}]`),
			check:     expectArgs("[]|[]"),
		},
		{
			name:      "a parameter takes its default when the pod does not set it",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  parameters: [{name: level, default: info}]\n  containers: [{name: s, image: s, args: [\"--level={{ params.level }}\"]}]"),
			check:     expectArgs("--level=info"),
		},
		{
			name:      "a parameter is set by the pod annotation <template>.param.sidecar.dev/<name>",
			pod:       valuesPod,
			templates: one("  parameters: [{name: level, default: info}]\n  containers: [{name: s, image: s, args: [\"--level={{ params.level }}\"]}]"),
			check:     expectArgs("--level=debug"),
		},
		{
			name:      "a parameter annotation for another template does not apply",
			pod:       simplePod("", `{sidecar.dev/inject: t, other.param.sidecar.dev/level: debug}`),
			templates: one("  parameters: [{name: level, default: info}]\n  containers: [{name: s, image: s, args: [\"--level={{ params.level }}\"]}]"),
			check:     expectArgs("--level=info"),
		},
		{
			name:      "an empty default is a default (the parameter is not missing)",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  parameters: [{name: level, default: \"\"}]\n  containers: [{name: s, image: s, args: [\"[{{ params.level }}]\"]}]"),
			decisions: []want{{"team-a", "t", I, ReasonRequested}},
			check:     expectArgs("[]"),
		},
		{
			name:      "a parameter without default that the pod does not set denies the pod under Fail (MissingParameter)",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  parameters: [{name: port}]\n  containers: [{name: s, image: s, args: [\"{{ params.port }}\"]}]"),
			decisions: []want{{"team-a", "t", DN, ReasonMissingParameter}},
			denied:    true,
			denyHas:   []string{`"t"`, "port"},
		},
		{
			name:      "a missing parameter under Ignore skips the template with a warning",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  failurePolicy: Ignore\n  parameters: [{name: port}]\n  containers: [{name: s, image: s, args: [\"{{ params.port }}\"]}]"),
			decisions: []want{{"team-a", "t", SK, ReasonMissingParameter}},
			warnHas:   []string{`"t"`, "port"},
			noPatch:   true,
		},
		{
			name:      "foreign template syntax passes through unchanged",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one(`  containers: [{name: s, image: s, args: ['{{ .Data.password }}', '{{ with secret "a/b" }}{{ .Data.x }}{{ end }}', '{{ env "HOME" }}']}]`),
			check:     expectArgs(`{{ .Data.password }}|{{ with secret "a/b" }}{{ .Data.x }}{{ end }}|{{ env "HOME" }}`),
		},
		{
			name:      "a value that itself looks like a placeholder is not expanded again",
			pod:       simplePod("", `{sidecar.dev/inject: t, x: "{{ pod.name }}"}`),
			templates: one(`  containers: [{name: s, image: s, args: ["{{ pod.annotations.x }}"]}]`),
			check:     expectArgs("{{ pod.name }}"),
		},
		{
			name:      "values with quotes, backslashes and newlines are JSON-encoded",
			pod:       simplePod("", `{sidecar.dev/inject: t, x: "a\"b\\c\nd"}`),
			templates: one(`  containers: [{name: s, image: s, args: ["{{ pod.annotations.x }}"]}]`),
			check:     expectArgs("a\"b\\c\nd"),
		},
		{
			name:      "per-pod values work in env, volumes, annotations and labels too",
			pod:       valuesPod,
			templates: one("  env: [{name: APP, value: \"{{ pod.labels.tier }}\"}]\n  volumes: [{name: v, configMap: {name: \"cfg-{{ pod.labels.tier }}\"}}]\n  annotations: {x.example.com/app: \"{{ pod.name }}\"}\n  labels: {derived: \"{{ pod.labels.tier }}\"}"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if v, _ := envValue(container(t, p, "app"), "APP"); v != "front" {
					t.Errorf("env APP = %q", v)
				}
				if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].ConfigMap == nil || p.Spec.Volumes[0].ConfigMap.Name != "cfg-front" {
					t.Errorf("volumes = %+v", p.Spec.Volumes)
				}
				if p.Annotations["x.example.com/app"] != "web-1" || p.Labels["derived"] != "front" {
					t.Errorf("metadata: %v %v", p.Annotations, p.Labels)
				}
			},
		},
	})
}

func TestInvalidTemplates(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "a namespaced template that sets hostNetwork is invalid: a pod requesting it is denied",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  hostNetwork: true"),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
			denyHas:   []string{`"t"`, "hostNetwork"},
		},
		{
			name:      "a namespaced template that sets hostPID is invalid, and under Ignore is skipped with a warning",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  failurePolicy: Ignore\n  hostPID: false\n  containers: [{name: s, image: s}]"),
			decisions: []want{{"team-a", "t", SK, ReasonInvalid}},
			warnHas:   []string{`"t"`, "hostPID"},
			noPatch:   true,
		},
		{
			name:      "a namespaced template that sets hostIPC is invalid",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  hostIPC: true"),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
		},
		{
			name:      "a template with a bad selector is invalid; a pod requesting it is denied",
			pod:       simplePod(`{app: web}`, `{sidecar.dev/inject: t}`),
			templates: one("  selector: {matchExpressions: [{key: app, operator: Bogus, values: [x]}]}\n  containers: [{name: s, image: s}]"),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
			denyHas:   []string{`"t"`, "selector"},
		},
		{
			name:      "a template using an undeclared parameter is invalid",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one(`  containers: [{name: s, image: s, args: ["{{ params.nope }}"]}]`),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
			denyHas:   []string{`"t"`, "nope"},
		},
		{
			name:      "a template using an unknown pod field is invalid",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one(`  env: [{name: U, value: "{{ pod.uid }}"}]`),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
			denyHas:   []string{`"t"`, "pod.uid"},
		},
		{
			name:      "an invalid template selected by an empty selector under Ignore is skipped, not injected",
			pod:       simplePod("", ""),
			templates: one("  selector: {}\n  failurePolicy: Ignore\n  hostNetwork: true\n  labels: {x: 'y'}"),
			decisions: []want{{"team-a", "t", SK, ReasonInvalid}},
			noPatch:   true,
		},
		{
			name:      "a template setting a reserved sidecar.dev/ annotation is invalid",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  annotations: {sidecar.dev/status: forged}"),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
		},
		{
			name:      "a container name with a per-pod value is invalid (names are fixed)",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one(`  containers: [{name: "s-{{ pod.name }}", image: s}]`),
			decisions: []want{{"team-a", "t", DN, ReasonInvalid}},
			denied:    true,
		},
		{
			name:      "the Template records the compile error for the store",
			pod:       simplePod("", `{sidecar.dev/inject: t}`),
			templates: one("  hostNetwork: true"),
			denied:    true,
			check: func(t *testing.T, r *Result, _ *corev1.Pod) {
				tm := Compile(parseTemplates(t, []byte(one("  hostNetwork: true")))[0], injectorNS)
				if tm.Err == nil || !strings.Contains(tm.Err.Error(), "hostNetwork") {
					t.Errorf("Compile error = %v", tm.Err)
				}
			},
		},
	})
}
