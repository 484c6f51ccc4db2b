package cli

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func runCompile(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCompileCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestCompilePrintsPoliciesAndBindingsAndFailsOnTemplatesItCannotServe(t *testing.T) {
	stdout, stderr, err := runCompile(t, "-f", "../policy/testdata/templates.yaml")
	if err == nil || !strings.Contains(err.Error(), "4 of 10 templates cannot be served by a policy") {
		t.Errorf("error %v: want it to count the templates left out", err)
	}
	for _, want := range []string{"SidecarTemplate sidecar-injector/dns cannot be served by a policy (EnvFromUnsupported)",
		"SidecarTemplate team-a/invalid cannot be served by a policy (TemplateInvalid)",
		"SidecarTemplate team-a/job-keep cannot be served by a policy (JobPolicyUnsupported)",
		"SidecarTemplate team-a/typed cannot be served by a policy (TypedParameterUnsupported)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	var kinds []string
	for _, doc := range strings.Split(stdout, "\n---\n") {
		var obj struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("stdout is not YAML documents: %v", err)
		}
		kinds = append(kinds, obj.Kind)
	}
	if got := strings.Join(kinds, " "); strings.Count(got, "MutatingAdmissionPolicy ") != 3 || !strings.Contains(got, "ValidatingAdmissionPolicyBinding") {
		t.Errorf("printed %s: want the mutating policies (team-a, team-b, cluster-wide), their bindings and the validating ones", got)
	}

	if _, _, err := runCompile(t, "-f", "../policy/testdata/templates.yaml", "--allow-partial"); err != nil {
		t.Errorf("--allow-partial: %v", err)
	}
}
