package cli

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/version"
)

// run runs the root command with args, as the binary named argv0 would, and returns stdout and stderr.
func run(t *testing.T, argv0 string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRootCommand()
	runAs(root, argv0)
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestVersionPrintsTheBuildAsTextOrJSON(t *testing.T) {
	stdout, _, err := run(t, "sidecar-injector", "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got version.Build
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, stdout)
	}
	if got != version.Get() || got.Version == "" || got.Commit == "" || !strings.HasPrefix(got.GoVersion, "go") {
		t.Errorf("version -o json = %+v, want %+v with every field set", got, version.Get())
	}
	for _, key := range []string{`"version"`, `"commit"`, `"goVersion"`, `"platform"`} {
		if !strings.Contains(stdout, key) {
			t.Errorf("version -o json lacks the key %s:\n%s", key, stdout)
		}
	}

	text, _, err := run(t, "sidecar-injector", "version")
	if err != nil || strings.TrimSpace(text) != VersionString() {
		t.Errorf("version = %q, %v; want %q", text, err, VersionString())
	}
	if _, _, err := run(t, "sidecar-injector", "version", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("version -o yaml: err = %v, want one naming the supported formats", err)
	}
}

// yamlDocs decodes the documents of inject's YAML output into generic objects, as JSON would decode them.
func yamlDocs(t *testing.T, s string) []any {
	t.Helper()
	var out []any
	for _, d := range strings.Split(s, "---\n") {
		var v any
		if err := yaml.Unmarshal([]byte(d), &v); err != nil {
			t.Fatalf("inject output is not YAML: %v\n%s", err, d)
		}
		out = append(out, v)
	}
	return out
}

// inject -o json writes the same objects as the default YAML: one as itself, several as a v1 List, and it
// reports and leaves out the documents it cannot inject in the same way.
func TestInjectOutputJSONHoldsTheSameObjectsAsYAML(t *testing.T) {
	for _, tc := range []struct {
		file     string
		wantList bool
	}{
		{"deployment.yaml", false},
		{"multi.yaml", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			args := []string{"-f", td + tc.file, "--templates", td + "templates.yaml"}
			yamlOut, yamlErr, yerr := runInject(t, "", args...)
			jsonOut, jsonErr, jerr := runInject(t, "", append(args, "-o", "json")...)
			if (yerr == nil) != (jerr == nil) || yamlErr != jsonErr {
				t.Errorf("stderr and error differ between yaml and json:\n%s%v\n---\n%s%v", yamlErr, yerr, jsonErr, jerr)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(jsonOut), &got); err != nil {
				t.Fatalf("inject -o json is not one JSON object: %v\n%s", err, jsonOut)
			}
			want := yamlDocs(t, yamlOut)
			var items []any
			if tc.wantList {
				if got["kind"] != "List" || got["apiVersion"] != "v1" {
					t.Fatalf("several documents: got kind %v, want a v1 List", got["kind"])
				}
				items, _ = got["items"].([]any)
			} else {
				items = []any{any(got)}
			}
			if !reflect.DeepEqual(items, want) {
				t.Errorf("-o json objects differ from the YAML ones:\n%s\n---\n%s", jsonOut, yamlOut)
			}
		})
	}
	if _, _, err := runInject(t, "", "-f", td+"pod.yaml", "--templates", td+"templates.yaml", "-o", "wide"); err == nil ||
		!strings.Contains(err.Error(), "use yaml or json") {
		t.Errorf("inject -o wide: err = %v, want one naming the supported formats", err)
	}
}

func TestRunAsKubectlPluginHelpSaysKubectlSidecar(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/sidecar-injector":    "sidecar-injector",
		"./bin/sidecar-injector":             "sidecar-injector",
		"/home/me/.krew/bin/kubectl-sidecar": "kubectl sidecar",
		"kubectl-sidecar.exe":                "kubectl sidecar",
		"kubectl-sidecar-injector":           "kubectl sidecar injector",
		"kubectl-":                           "sidecar-injector",
	} {
		if got := displayName(argv0); got != want {
			t.Errorf("displayName(%q) = %q, want %q", argv0, got, want)
		}
	}

	stdout, _, err := run(t, "kubectl-sidecar", "inject", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "kubectl sidecar inject -f FILE") || !strings.Contains(stdout, "  kubectl sidecar inject -f deploy.yaml") {
		t.Errorf("inject --help as kubectl-sidecar does not name the command `kubectl sidecar inject`:\n%s", stdout)
	}
	if strings.Contains(stdout, "sidecar-injector inject") {
		t.Errorf("inject --help as kubectl-sidecar still says `sidecar-injector inject`:\n%s", stdout)
	}
}

func TestShellCompletionIsGeneratedForEveryShell(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash":       "__start_sidecar-injector",
		"zsh":        "#compdef sidecar-injector",
		"fish":       "complete -c sidecar-injector",
		"powershell": "Register-ArgumentCompleter",
	} {
		stdout, _, err := run(t, "sidecar-injector", "completion", shell)
		if err != nil || !strings.Contains(stdout, marker) {
			t.Errorf("completion %s: err %v, output lacks %q", shell, err, marker)
		}
	}
	// Completion of a flag's values comes from the command itself (`__complete` is what the shell scripts call).
	stdout, _, err := run(t, "sidecar-injector", "__complete", "version", "-o", "")
	if err != nil || !strings.Contains(stdout, "text\njson\n") {
		t.Errorf("__complete version -o: err %v, got %q, want text and json offered", err, stdout)
	}
}
