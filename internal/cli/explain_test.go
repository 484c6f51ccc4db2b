package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func runExplain(args ...string) (string, error) {
	cmd := NewExplainCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(""))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// The flags reach the explain engine: the command prints exactly explain's golden output for the same inputs.
func TestExplainCommandFlags(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"offline.txt", nil},
		{"offline.json", []string{"-o", "json"}},
	} {
		args := append([]string{"-f", "../explain/testdata/pods.yaml", "--templates", "../explain/testdata/templates.yaml",
			"-n", "team-a", "--namespace-labels", "monitoring=enabled"}, tc.args...)
		got, err := runExplain(args...)
		if err != nil {
			t.Fatalf("explain %v: %v", args, err)
		}
		want, err := os.ReadFile("../explain/testdata/golden/" + tc.golden)
		if err != nil {
			t.Fatal(err)
		}
		// The pods' source is named as given on the command line.
		got = strings.ReplaceAll(got, "../explain/testdata/", "testdata/")
		if got != string(want) {
			t.Errorf("explain %v differs from ../explain/testdata/golden/%s:\n%s", args, tc.golden, got)
		}
	}
}

func TestExplainCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--templates", "t.yaml"}, `required flag(s) "filename" not set`},
		{[]string{"-f", "p.yaml", "--templates", "t.yaml", "--kubeconfig", "k"}, "if any flags in the group [templates kubeconfig] are set none of the others can be"},
		{[]string{"-f", "../explain/testdata/pods.yaml", "--kubeconfig", "/nonexistent/kubeconfig"}, "kubeconfig /nonexistent/kubeconfig"},
		{[]string{"-f", "../explain/testdata/pods.yaml", "--templates", "../explain/testdata/templates.yaml", "extra"}, "unknown command"},
	} {
		_, err := runExplain(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("explain %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// --exit-code fails after the report when a pod would be denied, and passes when none would be.
func TestExplainExitCodeFailsOnlyWhenAPodWouldBeDenied(t *testing.T) {
	base := []string{"-f", "../explain/testdata/pods.yaml", "--templates", "../explain/testdata/templates.yaml", "-n", "team-a"}
	out, err := runExplain(append(base, "--exit-code")...)
	if err == nil || !strings.Contains(err.Error(), "would be denied (--exit-code)") || !strings.Contains(out, "Denied") {
		t.Errorf("with a denied pod: error %v (output %d bytes), want the report and an error naming the denied pods", err, len(out))
	}
	if _, err := runExplain(base...); err != nil {
		t.Errorf("without --exit-code the same pods: %v, want no error", err)
	}
	if _, err := runExplain("-f", "../explain/testdata/workloads.yaml", "--templates", "../explain/testdata/templates.yaml", "-n", "team-a", "--exit-code"); err != nil {
		t.Errorf("no pod denied, --exit-code: %v, want no error", err)
	}
}

// Without --templates or --kubeconfig, the cluster is found through $KUBECONFIG, as kubectl finds it.
func TestExplainReadsKubeconfigFromTheEnvironment(t *testing.T) {
	path := t.TempDir() + "/config"
	// A server on loopback port 1, where nothing listens: the error shows which kubeconfig was read.
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: from-env, context: {cluster: c, user: u, namespace: team-a}}]
current-context: from-env
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config to fall back on
	_, err := runExplain("-f", "../explain/testdata/pods.yaml")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("explain with $KUBECONFIG: error %v, want one from the cluster it names (127.0.0.1:1)", err)
	}
}
