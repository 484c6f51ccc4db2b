package policy_test

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// randomCases is how many random pods the differential test creates in each cluster; seed fixes them.
const (
	randomCases = 60
	randomSeed  = 16
)

// TestPolicyModeStoresWhatTheWebhookStoresForRandomPods creates random pods that request and are selected by
// random templates (testdata/random-templates.yaml) in both clusters. The pods are those of the engine's
// property tests in kind (the generator is the engine's in spirit, written again here: it lives in the engine's
// test files): colliding names, absent and present lists, per-pod values, opt-outs, two namespaces.
func TestPolicyModeStoresWhatTheWebhookStoresForRandomPods(t *testing.T) {
	templates := readTemplates(t, filepath.Join("testdata", "random-templates.yaml"), "rand-a")
	r := rand.New(rand.NewSource(randomSeed))
	var cases []diffCase
	for i := range randomCases {
		ns, labels := "rand-a", map[string]string(nil)
		if r.Intn(3) == 0 {
			ns, labels = "rand-b", map[string]string{"env": "prod"}
		}
		cases = append(cases, diffCase{name: fmt.Sprintf("pod-%02d", i), pod: randomPod(r, ns, i), namespace: ns, nsLabels: labels, templates: templates})
	}
	runAll(t, "random", cases)
}

var (
	templateNames = []string{"log-shipper", "proxy", "setup", "first", "early", "meta", "params", "share", "noshare", "tracing", "node", "mesh"}
	// clusterWide are the names that serve rand-b (where rand-a's names are not found); "missing" is nowhere.
	clusterWide = []string{"node", "mesh", "proxy", "missing"}
	// containerNames are the pods' own; clashing ones collide with the templates' on purpose (conflicts).
	containerNames = []string{"app", "web", "worker"}
	clashing       = []string{"log-shipper", "debugger", "mesh-proxy", "setup"}
	volumeNames    = []string{"data", "app-logs", "otel-config", "cache"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.Intn(len(xs))] }

// randomPod returns a pod for namespace ns; i makes its name unique.
func randomPod(r *rand.Rand, ns string, i int) map[string]any {
	meta := map[string]any{"namespace": ns}
	if r.Intn(4) == 0 {
		meta["generateName"] = "gen-"
	} else {
		meta["name"] = fmt.Sprintf("pod-%02d", i)
	}
	labels := map[string]any{}
	for k, vs := range map[string][]string{"app": {"web", "api"}, "tier": {"node", "front"}, "mesh": {"on", "off"}} {
		if r.Intn(2) == 0 {
			labels[k] = pick(r, vs)
		}
	}
	if len(labels) > 0 || r.Intn(2) == 0 {
		meta["labels"] = labels
	}
	annotations := map[string]any{}
	if r.Intn(5) > 0 {
		var names []string
		for range 1 + r.Intn(3) {
			if ns == "rand-b" {
				names = append(names, pick(r, clusterWide))
			} else {
				names = append(names, pick(r, templateNames))
			}
		}
		annotations[v1alpha1.AnnotationInject] = strings.Join(names, pick(r, []string{",", " , ", ",,"}))
	}
	if r.Intn(12) == 0 {
		annotations[v1alpha1.AnnotationInject] = pick(r, []string{"false", " FALSE ", "False"})
	}
	if r.Intn(3) == 0 {
		annotations["note"] = `quoted "note" & <tag>`
	}
	if r.Intn(2) == 0 {
		annotations["params.param.sidecar.dev/token"] = "t0k3n"
	}
	if r.Intn(4) == 0 {
		annotations["example.com/keep"] = "pod"
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": randomSpec(r)}
}

func randomSpec(r *rand.Rand) map[string]any {
	spec := map[string]any{}
	used := map[string]bool{}
	var containers []any
	for range 1 + r.Intn(3) {
		name := pick(r, containerNames)
		if r.Intn(5) == 0 {
			name = pick(r, clashing)
		}
		if used[name] {
			continue
		}
		used[name] = true
		c := map[string]any{"name": name, "image": name + ":1"}
		if r.Intn(2) == 0 {
			c["env"] = []any{map[string]any{"name": pick(r, []string{"LOG_DIR", "MODE", "OTEL_ENDPOINT"}), "value": "pod"}}
		}
		if r.Intn(3) == 0 {
			c["volumeMounts"] = []any{map[string]any{"name": "data", "mountPath": pick(r, []string{"/data", "/var/log/app", "/etc/otel"})}}
			spec["volumes"] = []any{map[string]any{"name": "data", "emptyDir": map[string]any{}}}
		}
		containers = append(containers, c)
	}
	spec["containers"] = containers
	if r.Intn(3) == 0 {
		spec["initContainers"] = []any{map[string]any{"name": pick(r, []string{"init", "proxy", "prepare"}), "image": "init:1"}}
	}
	if r.Intn(3) == 0 {
		vols, _ := spec["volumes"].([]any)
		if name := pick(r, volumeNames); name != "data" || len(vols) == 0 {
			spec["volumes"] = append(vols, map[string]any{"name": name, "emptyDir": map[string]any{}})
		}
	}
	if r.Intn(4) == 0 {
		spec["shareProcessNamespace"] = r.Intn(2) == 0
	}
	if r.Intn(4) == 0 {
		spec["imagePullSecrets"] = []any{map[string]any{"name": pick(r, []string{"regcred", "own"})}}
	}
	if r.Intn(4) == 0 {
		spec["serviceAccountName"] = "custom-sa"
	}
	if r.Intn(4) == 0 { // a Job's pod: jobPolicy Native makes containers native sidecars, Skip leaves it out
		spec["restartPolicy"] = pick(r, []string{"Never", "OnFailure"})
	}
	return spec
}
