package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/inject/golden from the current output")

const td = "testdata/inject/"

// runInject runs `sidecar-injector inject ARGS` as the binary does (root command, error printed by Execute's
// rule) and returns what it wrote.
func runInject(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRootCommand()
	root.SetArgs(append([]string{"inject"}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	if err != nil {
		fmt.Fprintln(&errOut, "Error:", err) // as Execute prints it
	}
	return out.String(), errOut.String(), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkGolden compares got with testdata/inject/golden/NAME, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(td, "golden", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the tests with -update to create it, then read it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to rewrite it, then read the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// apiDecoder decodes the kinds the command writes into the typed API, as the API server would.
var apiDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s).UniversalDeserializer()
}()

// checkOutputParses checks that stdout is a YAML stream of the wanted kinds, each of which the typed API
// decodes (kubectl apply would accept it).
func checkOutputParses(t *testing.T, stdout string, wantKinds []string) {
	t.Helper()
	docs, err := workload.Split(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range docs {
		if d.Err != nil {
			t.Errorf("output document %d does not parse: %v", d.Index, d.Err)
			continue
		}
		kind, _ := d.Object["kind"].(string)
		kinds = append(kinds, kind)
		if _, gvk, err := apiDecoder.Decode(d.Raw, nil, nil); err != nil {
			t.Errorf("output document %d (%s) is not a valid %v: %v", d.Index, kind, gvk, err)
		}
	}
	if strings.Join(kinds, ",") != strings.Join(wantKinds, ",") {
		t.Errorf("output kinds = %v, want %v", kinds, wantKinds)
	}
}

func TestInjectCommand(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string // a file under testdata/inject fed on stdin
		// golden names testdata/inject/golden/GOLDEN.stdout.yaml and GOLDEN.stderr; cases that must give the
		// same output share them
		golden string
		// wantKinds are the kinds of the documents written, in order
		wantKinds []string
		wantErr   bool
		// wantStdout and wantStderr are substrings the output must contain, beyond the golden files
		wantStdout []string
		wantStderr []string
	}{
		{
			name: "a Deployment that requests a template by annotation gets it in its pod template, with selector templates and unknown fields kept",
			args: []string{"-f", td + "deployment.yaml", "--templates", td + "templates.yaml", "--namespace", "team-a"},
			// someFutureField is kept; log-shipper is requested; metrics-exporter (cluster-wide) selects it
			golden:     "deployment",
			wantKinds:  []string{"Deployment"},
			wantStdout: []string{"      someFutureField: 1\n", "name: log-shipper", "name: metrics-exporter", `"namespace":"team-a","name":"log-shipper"`},
		},
		{
			name:       "the same Deployment read from stdin with -f - gives the same output",
			args:       []string{"-f", "-", "--templates", td + "templates.yaml", "--namespace", "team-a"},
			stdin:      "deployment.yaml",
			golden:     "deployment",
			wantKinds:  []string{"Deployment"},
			wantStdout: []string{"      someFutureField: 1\n"},
		},
		{
			name:       "a StatefulSet in its own namespace gets the template of that namespace, from templates given as a List, and keeps its own env var",
			args:       []string{"-f", td + "statefulset.yaml", "--templates", td + "templates-data.yaml"},
			golden:     "statefulset",
			wantKinds:  []string{"StatefulSet"},
			wantStdout: []string{"value: /pgdata/log", "volumeClaimTemplates:"},
		},
		{
			name:      "a CronJob gets the template in its job's pod template",
			args:      []string{"-f", td + "cronjob.yaml", "--templates", td + "templates.yaml"},
			golden:    "cronjob",
			wantKinds: []string{"CronJob"},
		},
		{
			name:       "a bare Pod gets what it requests and what selects it, and a lenient template that conflicts is a warning",
			args:       []string{"-f", td + "pod.yaml", "--templates", td + "templates.yaml"},
			golden:     "pod",
			wantKinds:  []string{"Pod"},
			wantStderr: []string{`Warning: testdata/inject/pod.yaml: document 1 (Pod "debug"): sidecar template "lenient": container name "app" already exists in pod`},
		},
		{
			name:      "a List has each of its items injected and stays a List",
			args:      []string{"-f", td + "list.yaml", "--templates", td + "templates.yaml"},
			golden:    "list",
			wantKinds: []string{"List"},
		},
		{
			name:      "JSON input, two objects in a stream, is written as YAML",
			args:      []string{"-f", td + "deployment.json", "--templates", td + "templates.yaml"},
			golden:    "json",
			wantKinds: []string{"Deployment", "Pod"},
		},
		{
			name:      "in multi-document input, bad documents are reported by file and index, the others are written and the command fails",
			args:      []string{"-f", td + "multi.yaml", "--templates", td + "templates.yaml"},
			golden:    "multi",
			wantKinds: []string{"Job", "Service", "Pod"},
			wantErr:   true,
			wantStderr: []string{
				`testdata/inject/multi.yaml: document 2 (Deployment "web"): sidecar template "log-shipper": container name "log-shipper" already exists in pod`,
				"1 of 4 documents could not be injected",
			},
		},
		{
			name:      "a document that is not valid YAML, or whose pod has a field of the wrong type, is reported and the others are written",
			args:      []string{"-f", td + "malformed.yaml", "--templates", td + "templates.yaml"},
			golden:    "malformed",
			wantKinds: []string{"Pod", "Pod"},
			wantErr:   true,
			wantStderr: []string{
				"testdata/inject/malformed.yaml: document 2 (starting on line 6): cannot decode document: yaml: line 9:",
				`testdata/inject/malformed.yaml: document 3 (Deployment "wrong-type"): cannot read pod`,
				"2 of 4 documents could not be injected",
			},
		},
		{
			name:       "bad documents read from stdin are reported as <stdin>",
			args:       []string{"-f", "-", "--templates", td + "templates.yaml"},
			stdin:      "multi.yaml",
			golden:     "multi-stdin",
			wantKinds:  []string{"Job", "Service", "Pod"},
			wantErr:    true,
			wantStderr: []string{`<stdin>: document 2 (Deployment "web")`},
		},
		{
			name:       "a namespace labelled sidecar.dev/injection=disabled passes everything through unchanged",
			args:       []string{"-f", td + "deployment.json", "--templates", td + "templates.yaml", "--namespace-labels", "team=a,sidecar.dev/injection=disabled"},
			golden:     "namespace-disabled",
			wantKinds:  []string{"Deployment", "Pod"},
			wantStdout: []string{"        sidecar.dev/inject: log-shipper\n"},
		},
		{
			name:      "templates are decoded strictly: unknown fields and other kinds are errors naming the file, the document and the field, and nothing is written",
			args:      []string{"-f", td + "deployment.yaml", "--templates", td + "templates-unknown-field.yaml"},
			golden:    "templates-unknown-field",
			wantKinds: nil,
			wantErr:   true,
			wantStderr: []string{
				`testdata/inject/templates-unknown-field.yaml: document 2 (SidecarTemplate "typo"): unknown field "spec.contaners"; unknown field "spec.volumes[0].emptyDir.sizeLimt"`,
				`testdata/inject/templates-unknown-field.yaml: document 3 (ConfigMap "not-a-template"): kind "ConfigMap"`,
				`testdata/inject/templates-unknown-field.yaml: document 4 (List) item 2 (SidecarTemplate "also-typo"): unknown field "spec.lables"`,
			},
		},
		{
			name:      "an invalid template is a warning when read, and a pod that requests it is denied under its failurePolicy",
			args:      []string{"-f", td + "pod-requests-invalid.yaml", "--templates", td + "templates-invalid.yaml"},
			golden:    "invalid-template",
			wantKinds: nil,
			wantErr:   true,
			wantStderr: []string{
				`Warning: testdata/inject/templates-invalid.yaml: document 1 (SidecarTemplate "net-debug"): the template is invalid: spec.hostNetwork`,
				`testdata/inject/pod-requests-invalid.yaml: document 1 (Pod "wants-net-debug"): sidecar template "net-debug" is invalid`,
			},
		},
		{
			name:       "-f and --templates are required",
			args:       []string{},
			golden:     "missing-flags",
			wantErr:    true,
			wantStderr: []string{`required flag(s) "filename", "templates" not set`},
		},
		{
			name:      "sidecar.dev/inject on a Deployment's own metadata or on an unknown kind is a warning naming the fix, and the documents are written",
			args:      []string{"-f", td + "misplaced.yaml", "--templates", td + "templates.yaml", "--namespace", "team-a"},
			golden:    "misplaced",
			wantKinds: []string{"Deployment", "PodTemplate"},
			wantStderr: []string{`document 1 (Deployment "web"): sidecar.dev/inject: log-shipper is on the Deployment's own metadata, where nothing reads it; move it to the pod template's`,
				`document 2 (PodTemplate "canary"): asks for injection (sidecar.dev/inject: log-shipper) but inject does not know where a PodTemplate keeps its pod`},
		},
		{
			name:       "with --strict the same documents make the command fail, after writing them",
			args:       []string{"-f", td + "misplaced.yaml", "--templates", td + "templates.yaml", "--namespace", "team-a", "--strict"},
			golden:     "misplaced-strict",
			wantKinds:  []string{"Deployment", "PodTemplate"},
			wantErr:    true,
			wantStderr: []string{"2 of 2 documents ask for injection where nothing reads the request (--strict)"},
		},
		{
			name:      "the same mistakes inside a List, and a List within it, are found and named by their item; a pod asking in the right place is not",
			args:      []string{"-f", td + "misplaced-list.yaml", "--templates", td + "templates.yaml", "--namespace", "team-a", "--strict"},
			golden:    "misplaced-list-strict",
			wantKinds: []string{"List"},
			wantErr:   true,
			wantStderr: []string{`document 1 (List): item 1 (Deployment "web"): sidecar.dev/inject: log-shipper is on the Deployment's own metadata, where nothing reads it`,
				`document 1 (List): item 2.1 (CronJob "nightly"): sidecar.dev/inject: log-shipper is on the CronJob's own metadata, where nothing reads it; move it to the pod template's (spec.template.metadata.annotations of spec.jobTemplate.spec)`,
				"1 of 1 documents ask for injection where nothing reads the request (--strict)"},
		},
		{
			name:       "typed parameters set per pod give the sidecar those resources and that port; a value above the maximum is the template's failure, naming the parameter, the value and the bound",
			args:       []string{"-f", td + "typed.yaml", "--templates", td + "templates-typed.yaml", "--namespace", "team-a"},
			golden:     "typed",
			wantKinds:  []string{"Deployment"},
			wantErr:    true,
			wantStderr: []string{`document 2 (Pod "greedy"): sidecar template "proxy": parameter "cpu" (Quantity, set by the pod's annotation "proxy.param.sidecar.dev/cpu"): "4" is above the maximum 2`},
		},
		{
			name:      "several -f, a directory among them, are read in order: the directory's YAML files by name",
			args:      []string{"-f", td + "pod.yaml", "-f", td + "dir", "--templates", td + "templates.yaml", "--namespace", "team-a"},
			golden:    "several-inputs",
			wantKinds: []string{"Pod", "Deployment", "CronJob"},
		},
		{
			name:       "stdin can be read once only",
			args:       []string{"-f", "-", "-f", "-", "--templates", td + "templates.yaml"},
			golden:     "stdin-twice",
			wantErr:    true,
			wantStderr: []string{"-f - (stdin) can be given only once"},
		},
		{
			name:       "a file that does not exist is an error naming it",
			args:       []string{"-f", td + "nope.yaml", "--templates", td + "templates.yaml"},
			golden:     "missing-file",
			wantErr:    true,
			wantStderr: []string{"testdata/inject/nope.yaml: no such file or directory"},
		},
		{
			name:       "-f and --templates cannot both be stdin",
			args:       []string{"-f", "-", "--templates", "-"},
			golden:     "both-stdin",
			wantErr:    true,
			wantStderr: []string{"-f and --templates cannot both read stdin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := ""
			if tt.stdin != "" {
				stdin = readFile(t, td+tt.stdin)
			}
			stdout, stderr, err := runInject(t, stdin, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Errorf("error = %v, want an error: %v\nstderr:\n%s", err, tt.wantErr, stderr)
			}
			checkGolden(t, tt.golden+".stdout.yaml", stdout)
			checkGolden(t, tt.golden+".stderr", stderr)
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
			checkOutputParses(t, stdout, tt.wantKinds)
		})
	}
}

// Feeding the command its own output changes nothing: the pod templates carry sidecar.dev/status, so the
// templates count as already injected (and the webhook will leave the pods created from them alone).
func TestInjectCommandIsIdempotent(t *testing.T) {
	for _, c := range []struct{ input, templates, namespace string }{
		{"deployment.yaml", "templates.yaml", "team-a"},
		{"statefulset.yaml", "templates-data.yaml", "default"},
		{"cronjob.yaml", "templates.yaml", "default"},
		{"pod.yaml", "templates.yaml", "default"},
		{"list.yaml", "templates.yaml", "default"},
		{"deployment.json", "templates.yaml", "default"},
	} {
		t.Run(c.input, func(t *testing.T) {
			args := []string{"-f", "-", "--templates", td + c.templates, "--namespace", c.namespace}
			once, _, err := runInject(t, readFile(t, td+c.input), args...)
			if err != nil {
				t.Fatal(err)
			}
			twice, _, err := runInject(t, once, args...)
			if err != nil {
				t.Fatal(err)
			}
			if once != twice {
				t.Errorf("injecting the output again changed it:\n--- once\n%s\n--- twice\n%s", once, twice)
			}
		})
	}
}
