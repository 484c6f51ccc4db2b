package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets this test binary be the kubectl plugin: run as kubectl-sidecar, it is the command line, so the
// completion chain kubectl uses (kubectl_complete-sidecar → kubectl-sidecar __complete) is tested end to end.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "kubectl-sidecar" {
		os.Exit(Execute())
	}
	os.Exit(m.Run())
}

func TestCompletionAsKubectlPluginIsKubectlsAndNamesKubectlSidecar(t *testing.T) {
	help, _, err := run(t, "kubectl-sidecar", "completion", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubectl sidecar completion > ", "kubectl_complete-sidecar", "command -v kubectl-sidecar"} {
		if !strings.Contains(help, want) {
			t.Errorf("completion --help as kubectl-sidecar lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "sidecar-injector") {
		t.Errorf("completion --help as kubectl-sidecar names sidecar-injector:\n%s", help)
	}
	if _, _, err := run(t, "kubectl-sidecar", "completion", "bash"); err == nil || !strings.Contains(err.Error(), "takes no shell name") {
		t.Errorf("kubectl sidecar completion bash: err = %v, want one saying kubectl's completion takes no shell name", err)
	}

	script, _, err := run(t, "kubectl-sidecar", "completion")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, "kubectl-sidecar")); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "kubectl_complete-sidecar")
	if err := os.WriteFile(helper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+filepath.Join(dir, "none"))
	// kubectl runs the helper with the words after `kubectl sidecar`, the word being completed last.
	complete := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %q: %v", name, args, err)
		}
		return string(out)
	}
	if got := complete(helper, "version", "-o", ""); got != "text\njson\n:4\n" {
		t.Errorf("kubectl_complete-sidecar version -o '' = %q, want text and json offered, no file completion (:4)", got)
	}
	if got := complete(helper, "inj"); !strings.HasPrefix(got, "inject\t") {
		t.Errorf("kubectl_complete-sidecar inj = %q, want the inject command", got)
	}
	// With a kubectl on the PATH, through kubectl itself, as the shell's completion calls it.
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Log("no kubectl on the PATH: completion through kubectl itself not tried")
		return
	}
	if got := complete("kubectl", "__complete", "sidecar", "version", "-o", ""); got != "text\njson\n:4\n" {
		t.Errorf("kubectl __complete sidecar version -o '' = %q, want text and json offered", got)
	}
}
