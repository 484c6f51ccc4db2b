package inject

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// fixedTemplatesYAML is a set of templates that together use every field a template can add. The property
// tests, the fuzz target and the benchmarks pick from it. No template adds a label that a selector reads, so
// that feeding a pod back cannot make a new selector match.
const fixedTemplatesYAML = `
metadata: {name: log-shipper, namespace: team-a, generation: 3}
spec:
  containers:
  - name: log-shipper
    image: fluent/fluent-bit:3.2
    volumeMounts: [{name: app-logs, mountPath: /var/log/app, readOnly: true}]
  volumes: [{name: app-logs, emptyDir: {}}]
  volumeMounts: [{name: app-logs, mountPath: /var/log/app}]
  env: [{name: LOG_DIR, value: /var/log/app}]
  envFrom: [{configMapRef: {name: shared}}]
---
metadata: {name: proxy, namespace: team-a, generation: 1}
spec:
  order: 5
  failurePolicy: Ignore
  initContainers:
  - {name: proxy, image: "envoy:1", restartPolicy: Always}
  - {name: proxy-init, image: "envoy-init:1"}
---
metadata: {name: setup, namespace: team-a, generation: 1}
spec:
  order: 6
  initContainerPlacement: First
  initContainers: [{name: setup, image: "setup:1"}]
---
metadata: {name: first, namespace: team-a, generation: 1}
spec:
  order: -3
  containerPlacement: First
  containers: [{name: first-sidecar, image: "first:1"}, {name: first-sidecar-2, image: "first:1"}]
  labels: {first.example.com/placed: "yes"}
---
metadata: {name: meta, namespace: team-a, generation: 2}
spec:
  selector: {matchLabels: {app: web}}
  failurePolicy: Ignore
  annotations: {"example.com/a.b": "tilde", "example.com/keep": "template", "prometheus.io/scrape": "true"}
  labels: {"example.com/team": platform}
  imagePullSecrets: [{name: regcred}, {name: mirror}]
---
metadata: {name: dns, namespace: sidecar-injector, generation: 4}
spec:
  selector: {}
  failurePolicy: Ignore
  dnsConfig:
    nameservers: [10.0.0.10]
    searches: [corp.local]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  hostAliases: [{ip: 10.0.0.1, hostnames: [db.local, db2.local]}, {ip: 10.0.0.7, hostnames: [seven.local]}]
---
metadata: {name: params, namespace: team-a, generation: 1}
spec:
  parameters: [{name: level, default: info}]
  containers:
  - name: params-sidecar
    image: params:1
    args: ["--pod={{ pod.name }}", "--gen={{ pod.generateName }}", "--ns={{ pod.namespace }}", "--app={{ pod.labels.app }}", "--note={{ pod.annotations.note }}", "--level={{params.level}}", "--sa={{ pod.serviceAccountName }}", "{{ .Data.password }}"]
  env: [{name: POD_APP, value: "{{ pod.labels.app }}"}]
---
metadata: {name: share, namespace: team-a, generation: 1}
spec:
  failurePolicy: Ignore
  shareProcessNamespace: true
  containers: [{name: debugger, image: "busybox:1"}]
---
metadata: {name: tracing, namespace: team-a, generation: 1}
spec:
  targetContainers: [app, web]
  env: [{name: OTEL_ENDPOINT, value: "http://otel:4317"}]
  volumeMounts: [{name: otel-config, mountPath: /etc/otel}]
  volumes: [{name: otel-config, configMap: {name: otel}}]
---
metadata: {name: node, namespace: sidecar-injector, generation: 1}
spec:
  selector: {matchLabels: {tier: node}}
  failurePolicy: Ignore
  hostNetwork: true
  hostPID: false
  containers: [{name: node-agent, image: "node:1"}]
`

var fixedTemplateNames = []string{"log-shipper", "proxy", "setup", "first", "meta", "dns", "params", "share", "tracing", "node"}

func fixedTemplates(t testing.TB) []*Template {
	t.Helper()
	ts := compileAll(parseTemplates(t, []byte(fixedTemplatesYAML)), injectorNS)
	for _, x := range ts {
		if x.Err != nil {
			t.Fatalf("fixed template %s is invalid: %v", x.Key(), x.Err)
		}
	}
	return ts
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.Intn(len(xs))] }

// unknownValue is a random JSON value for a planted unknown field.
func unknownValue(r *rand.Rand) any {
	switch r.Intn(6) {
	case 0:
		return "v" + itoa(r.Intn(100))
	case 1:
		return r.Intn(1000)
	case 2:
		return true
	case 3:
		return nil
	case 4:
		return []any{1, "two", map[string]any{"three": []any{}}}
	default:
		return map[string]any{"nested": map[string]any{"deeper": "x"}, "list": []any{map[string]any{"k": "v"}}}
	}
}

// plant adds a random unknown field to m with probability p.
func plant(r *rand.Rand, m map[string]any, p float64) {
	if r.Float64() < p {
		m[unknownPrefix+pick(r, []string{"A", "B", "Zeta", "_x"})] = unknownValue(r)
	}
}

// randomPod builds a random raw pod with unknown fields planted at every depth. Container and init container
// names are unique across both lists, as the API server requires.
func randomPod(r *rand.Rand) []byte {
	used := map[string]bool{}
	uniqueName := func(pool []string) (string, bool) {
		for range 6 {
			n := pick(r, pool)
			if !used[n] {
				used[n] = true
				return n, true
			}
		}
		return "", false
	}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod"}
	plant(r, pod, 0.5)
	meta := map[string]any{}
	if r.Intn(3) > 0 {
		meta["name"] = pick(r, []string{"web-1", "a", "pod-with-a-long-name-0123456789"})
	} else {
		meta["generateName"] = "gen-"
	}
	if r.Intn(2) == 0 {
		meta["namespace"] = "team-a"
	}
	if r.Intn(4) > 0 {
		labels := map[string]any{}
		for range r.Intn(4) {
			k := pick(r, []string{"app", "tier", "app.kubernetes.io/name", "example.com/team", "first.example.com/placed"})
			labels[k] = pick(r, []string{"web", "api", "node", "x", ""})
		}
		meta["labels"] = labels
	}
	if r.Intn(5) > 0 {
		ann := map[string]any{}
		if r.Intn(4) > 0 {
			var names []string
			for range r.Intn(4) {
				names = append(names, pick(r, fixedTemplateNames))
			}
			sep := pick(r, []string{",", ", ", " , ", ",,"})
			v := strings.Join(names, sep)
			if r.Intn(8) == 0 {
				v = pick(r, []string{"false", "False", "FALSE", " ", "nope", "log-shipper,nope"})
			}
			ann["sidecar.dev/inject"] = v
		}
		if r.Intn(4) == 0 {
			ann["params.param.sidecar.dev/level"] = pick(r, []string{"debug", "", `"quoted" \ {{ pod.name }}`})
		}
		if r.Intn(3) == 0 {
			ann["note"] = pick(r, []string{"plain", "line\nbreak \"q\" \\ <&>", "{{ params.level }}"})
		}
		if r.Intn(3) == 0 {
			ann["example.com/keep"] = "pod"
		}
		if r.Intn(5) == 0 {
			ann["sidecar.dev/status"] = pick(r, []string{
				"garbage{",
				`{"templates":[]}`,
				`{"templates":[{"namespace":"team-a","name":"log-shipper","generation":3,"hash":"x","containers":["log-shipper"],"volumes":["app-logs"]}]}`,
				`{"templates":[{"namespace":"team-a","name":"first","generation":1,"hash":"x","containers":["app","first-sidecar"]}]}`,
				`{"templates":[{"namespace":"team-b","name":"ghost","containers":["web"]}]}`,
			})
		}
		meta["annotations"] = ann
	}
	plant(r, meta, 0.5)
	pod["metadata"] = meta

	spec := map[string]any{}
	plant(r, spec, 0.5)
	mkContainer := func(name string) map[string]any {
		c := map[string]any{"name": name, "image": name + ":1"}
		plant(r, c, 0.4)
		if r.Intn(2) == 0 {
			var env []any
			for range r.Intn(4) {
				e := map[string]any{"name": pick(r, []string{"LOG_DIR", "MODE", "OTEL_ENDPOINT", "POD_APP", "X_" + itoa(r.Intn(1000))}), "value": "v"}
				plant(r, e, 0.4)
				env = append(env, e)
			}
			c["env"] = dedupeBy(env, "name")
		}
		if r.Intn(2) == 0 {
			var mounts []any
			for range r.Intn(3) {
				m := map[string]any{"name": pick(r, []string{"data", "app-logs", "otel-config"}), "mountPath": pick(r, []string{"/data", "/var/log/app", "/etc/otel", "/tmp"})}
				plant(r, m, 0.4)
				mounts = append(mounts, m)
			}
			c["volumeMounts"] = dedupeBy(mounts, "mountPath")
		}
		if r.Intn(4) == 0 {
			c["envFrom"] = []any{map[string]any{"configMapRef": map[string]any{"name": pick(r, []string{"shared", "other"})}}}
		}
		if r.Intn(4) == 0 {
			c["resources"] = map[string]any{"limits": map[string]any{"cpu": "100m", "memory": "64Mi"}}
		}
		return c
	}
	var containers []any
	for range 1 + r.Intn(4) {
		if n, ok := uniqueName([]string{"app", "web", "worker", "api", "log-shipper", "debugger", "x"}); ok {
			containers = append(containers, mkContainer(n))
		}
	}
	spec["containers"] = containers
	switch r.Intn(3) {
	case 0:
	case 1:
		spec["initContainers"] = []any{}
	default:
		var inits []any
		for range 1 + r.Intn(3) {
			if n, ok := uniqueName([]string{"init", "migrate", "proxy", "setup", "seed"}); ok {
				c := mkContainer(n)
				if r.Intn(3) == 0 {
					c["restartPolicy"] = "Always"
				}
				inits = append(inits, c)
			}
		}
		spec["initContainers"] = inits
	}
	switch r.Intn(3) {
	case 0:
	case 1:
		spec["volumes"] = []any{}
	default:
		seen := map[string]bool{}
		var vols []any
		for range 1 + r.Intn(3) {
			n := pick(r, []string{"data", "app-logs", "cache", "otel-config", "token"})
			if seen[n] {
				continue
			}
			seen[n] = true
			v := map[string]any{"name": n, "emptyDir": map[string]any{}}
			plant(r, v, 0.4)
			vols = append(vols, v)
		}
		spec["volumes"] = vols
	}
	if r.Intn(3) == 0 {
		spec["imagePullSecrets"] = []any{map[string]any{"name": pick(r, []string{"regcred", "own"})}}
	}
	if r.Intn(3) == 0 {
		ha := []any{map[string]any{"ip": "10.0.0.1", "hostnames": []any{"db.local"}}}
		if r.Intn(2) == 0 {
			ha = append(ha, map[string]any{"ip": "10.9.9.9"})
		}
		spec["hostAliases"] = ha
	}
	if r.Intn(3) == 0 {
		dc := map[string]any{}
		if r.Intn(2) == 0 {
			dc["nameservers"] = []any{"1.1.1.1"}
		}
		if r.Intn(2) == 0 {
			dc["options"] = []any{map[string]any{"name": "ndots", "value": pick(r, []string{"2", "5"})}}
		}
		plant(r, dc, 0.4)
		spec["dnsConfig"] = dc
	}
	if r.Intn(4) == 0 {
		spec["shareProcessNamespace"] = r.Intn(2) == 0
	}
	if r.Intn(5) == 0 {
		spec["hostNetwork"] = r.Intn(2) == 0
	}
	if r.Intn(3) == 0 {
		spec["serviceAccountName"] = "sa-" + itoa(r.Intn(10))
	}
	pod["spec"] = spec
	if r.Intn(3) == 0 {
		st := map[string]any{"phase": "Pending"}
		plant(r, st, 0.5)
		pod["status"] = st
	}
	b, err := json.Marshal(pod)
	if err != nil {
		panic(fmt.Sprintf("random pod: %v", err))
	}
	return b
}

func dedupeBy(xs []any, key string) []any {
	seen := map[any]bool{}
	out := []any{}
	for _, x := range xs {
		k := x.(map[string]any)[key]
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, x)
	}
	return out
}

// randomSubset returns a random selection of the templates, in random order.
func randomSubset(r *rand.Rand, ts []*Template) []*Template {
	var out []*Template
	for _, t := range ts {
		if r.Intn(3) > 0 {
			out = append(out, t)
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
