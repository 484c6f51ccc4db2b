package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it).\n--- want\n%s\n--- got\n%s", file, want, got)
	}
}

func run(t *testing.T, cfg Config, stdin string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Run(context.Background(), cfg, strings.NewReader(stdin), &out); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out.Bytes()
}

var offline = Config{File: "testdata/pods.yaml", TemplatesFile: "testdata/templates.yaml", Namespace: "team-a",
	NamespaceLabels: "monitoring=enabled"}

func TestGoldenText(t *testing.T) {
	golden(t, "offline.txt", run(t, offline, ""))
}

func TestGoldenJSON(t *testing.T) {
	cfg := offline
	cfg.Output = "json"
	got := run(t, cfg, "")
	golden(t, "offline.json", got)

	// The JSON is for tools: check what it says, not only that it did not change.
	var rep Report
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Pods) != 3 {
		t.Fatalf("%d pods, want 3", len(rep.Pods))
	}
	results := []string{rep.Pods[0].Result, rep.Pods[1].Result, rep.Pods[2].Result}
	if strings.Join(results, ",") != "injected,denied,unchanged" {
		t.Errorf("results %v, want injected, denied, unchanged", results)
	}
	outcome := map[string]string{}
	for _, tpl := range rep.Pods[0].Templates {
		outcome[tpl.Namespace+"/"+tpl.Name] = string(tpl.Outcome) + "/" + string(tpl.Reason)
	}
	for key, want := range map[string]string{
		"team-a/log-shipper":           "Injected/Requested",
		"sidecar-injector/metrics":     "Injected/SelectorMatched",
		"sidecar-injector/log-shipper": "NotApplicable/Shadowed",
		"team-a/api-proxy":             "NotApplicable/SelectorMismatch",
		"team-a/clashing":              "Skipped/Conflict",
		"team-a/debug":                 "NotApplicable/NotRequested",
		"team-b/elsewhere":             "NotApplicable/OutOfScope",
	} {
		if outcome[key] != want {
			t.Errorf("pod web, template %s: %q, want %q", key, outcome[key], want)
		}
	}

	// The patch is the webhook's: it applies to the pod and gives it the sidecars.
	pods, err := ReadPods(strings.NewReader(mustRead(t, "testdata/pods.yaml")), "pods", "team-a", "team-a")
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(rep.Pods[0].Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(pods[0].Raw)
	if err != nil {
		t.Fatalf("apply the patch to the pod: %v", err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, "init:"+c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "init:metrics-agent,app,log-shipper" {
		t.Errorf("patched pod has containers %v, want init:metrics-agent, app, log-shipper", names)
	}
	if string(rep.Pods[1].Patch) != "[]" || string(rep.Pods[2].Patch) != "[]" {
		t.Errorf("denied and opted-out pods have patches %s and %s, want []", rep.Pods[1].Patch, rep.Pods[2].Patch)
	}
}

// Workloads: the pod template of each, as the offline inject command reads them.
func TestGoldenWorkloads(t *testing.T) {
	cfg := offline
	cfg.File = "testdata/workloads.yaml"
	golden(t, "workloads.txt", run(t, cfg, ""))
}

func TestGoldenNamespaceNotSelected(t *testing.T) {
	cfg := offline
	cfg.File = "-"
	cfg.NamespaceLabels = ""
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: api}\nspec:\n  containers:\n  - name: app\n    image: nginx\n"
	golden(t, "namespace-not-selected.txt", run(t, cfg, pod))
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestErrors(t *testing.T) {
	// No kubeconfig anywhere: the cluster is found as kubectl finds it ($KUBECONFIG, ~/.kube/config).
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pod := write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team-a}\nspec: {containers: [{name: a, image: b}]}\n")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no template source and no kubeconfig anywhere", Config{File: pod}, "no cluster to read templates from: give --templates FILE"},
		{"both template sources", Config{File: pod, TemplatesFile: "x", Kubeconfig: "y"}, "give either --templates FILE (offline) or a cluster"},
		{"bad output", Config{File: pod, TemplatesFile: "testdata/templates.yaml", Output: "yaml"}, "text or json"},
		{"unknown field", Config{File: pod, TemplatesFile: write("t1.yaml",
			"apiVersion: sidecar.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: t}\nspec: {containerz: []}\n")}, `document 1 (SidecarTemplate "t"): unknown field "spec.containerz"`},
		{"a YAML boolean where the API expects a string (read as the API server would, as inject reads it)", Config{File: pod, TemplatesFile: write("t4.yaml",
			"apiVersion: sidecar.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: t}\nspec: {env: [{name: A, value: yes}]}\n")}, `document 1 (SidecarTemplate "t"): `},
		{"duplicate field", Config{File: pod, TemplatesFile: write("t2.yaml",
			"apiVersion: sidecar.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: t}\nspec: {order: 1, order: 2}\n")}, `key "order" already set`},
		{"not a template", Config{File: pod, TemplatesFile: write("t3.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\n")},
			`document 1 (ConfigMap "t"): kind "ConfigMap" (apiVersion "v1") is not a SidecarTemplate`},
		{"only objects without pods", Config{File: write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n"),
			TemplatesFile: "testdata/templates.yaml"}, "cm.yaml: no pod found"},
		{"workload at another apiVersion", Config{File: write("d.yaml", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n"),
			TemplatesFile: "testdata/templates.yaml"}, `d.yaml#1: apiVersion "extensions/v1beta1" of Deployment is not supported`},
		{"namespace mismatch", Config{File: pod, TemplatesFile: "testdata/templates.yaml", Namespace: "team-b"},
			`pod.yaml#1: Pod "p": its namespace "team-a" does not match --namespace "team-b"`},
		{"bad labels", Config{File: pod, TemplatesFile: "testdata/templates.yaml", NamespaceLabels: "a"}, "--namespace-labels"},
		{"no pods", Config{File: write("empty.yaml", "---\n# nothing\n"), TemplatesFile: "testdata/templates.yaml"}, "no pod found"},
	} {
		err := Run(context.Background(), tc.cfg, strings.NewReader(""), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// A pod the engine cannot read is reported, not fatal.
func TestUnreadablePod(t *testing.T) {
	cfg := Config{File: "-", TemplatesFile: "testdata/templates.yaml", Namespace: "team-a", Output: "json"}
	got := run(t, cfg, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad","annotations":"oops"}}`)
	var rep Report
	if err := json.Unmarshal(got, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Pods) != 1 || rep.Pods[0].Result != "error" || rep.Pods[0].Error == "" {
		t.Errorf("want one pod with result error and a message, got %s", got)
	}
}

// Against a cluster: templates of the pod's namespace and the injector's only, and the namespace's live labels.
func TestClusterSource(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	items, err := ReadTemplates(strings.NewReader(mustRead(t, "testdata/templates.yaml")), "templates", "team-a")
	if err != nil {
		t.Fatal(err)
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"monitoring": "enabled"}}},
	}
	for i := range items {
		objs = append(objs, &items[i])
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()

	var calls int
	counting := &countingReader{Reader: cl, calls: &calls}
	cfg := Config{File: "testdata/pods.yaml", Namespace: "team-a", Output: "json", client: counting}
	clusterJSON := run(t, cfg, "")
	// Same templates, same labels: the same report as offline, minus the template of another namespace, which
	// the cluster source never reads.
	offlineCfg := offline
	offlineCfg.Output = "json"
	var fromCluster, fromFile Report
	if err := json.Unmarshal(clusterJSON, &fromCluster); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(run(t, offlineCfg, ""), &fromFile); err != nil {
		t.Fatal(err)
	}
	for i := range fromFile.Pods {
		var kept []Template
		for _, tpl := range fromFile.Pods[i].Templates {
			if tpl.Namespace != "team-b" {
				kept = append(kept, tpl)
			}
		}
		fromFile.Pods[i].Templates = kept
	}
	a, _ := json.Marshal(fromCluster)
	b, _ := json.Marshal(fromFile)
	if !bytes.Equal(a, b) {
		t.Errorf("cluster report differs from the offline one.\ncluster: %s\noffline: %s", a, b)
	}
	// 3 pods in one namespace: two template lists, their two revision lists and one namespace read, cached.
	if calls != 5 {
		t.Errorf("%d API reads, want 5 (list team-a and sidecar-injector, their revisions, get namespace team-a)", calls)
	}

	// --namespace-labels replaces the live labels.
	cfg.NamespaceLabelsSet, cfg.NamespaceLabels, cfg.Output = true, "", "text"
	text := string(run(t, cfg, ""))
	if !strings.Contains(text, "NamespaceSelectorMismatch") {
		t.Errorf("with --namespace-labels '' the cluster-wide metrics template should not select team-a:\n%s", text)
	}
}

func TestReadTemplatesDefaults(t *testing.T) {
	items, err := ReadTemplates(strings.NewReader(mustRead(t, "testdata/templates.yaml")), "templates", "ns-x")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, it := range items {
		got[it.Namespace+"/"+it.Name] = true
		if it.Generation != 1 {
			t.Errorf("%s/%s: generation %d, want 1", it.Namespace, it.Name, it.Generation)
		}
	}
	for _, want := range []string{"ns-x/log-shipper", "sidecar-injector/log-shipper", "sidecar-injector/metrics", "ns-x/api-proxy",
		"ns-x/clashing", "ns-x/debug", "ns-x/needs-param", "team-b/elsewhere"} {
		if !got[want] {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	if len(items) != 8 {
		t.Errorf("%d templates, want 8", len(items))
	}
}

// countingReader counts the reads that reach the API.
type countingReader struct {
	client.Reader
	calls *int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	*c.calls++
	return c.Reader.Get(ctx, key, obj, opts...)
}

func (c *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	*c.calls++
	return c.Reader.List(ctx, list, opts...)
}
