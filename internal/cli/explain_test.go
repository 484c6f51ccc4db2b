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
		{[]string{"-f", "p.yaml"}, "at least one of the flags in the group [templates kubeconfig] is required"},
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
