package v1alpha1

import (
	"encoding/json"
	"regexp"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

const typedSpec = `{"parameters":[{"name":"cpu","type":"Quantity"},{"name":"port","type":"Integer"}],` +
	`"containers":[{"name":"a","image":"a:1","resources":{"requests":{"cpu":"{{ params.cpu }}","memory":"64Mi"}}},` +
	`{"name":"b","image":"b:1","resources":{},"ports":[{"containerPort":80},{"containerPort":"{{ params.port }}","hostPort":"{{params.port}}"}]}],` +
	`"initContainers":[{"name":"i","image":"i:1","resources":{"limits":{"nvidia.com/gpu":"{{ params.cpu }}"}}}]}`

func TestASpecWithTypedPlaceholdersDecodesThemAsideAndEncodesThemBackInPlace(t *testing.T) {
	var spec SidecarTemplateSpec
	if err := json.Unmarshal([]byte(typedSpec), &spec); err != nil {
		t.Fatalf("decoding a spec the CRD accepts: %v", err)
	}
	want := map[string]string{
		"containers[0].resources.requests.cpu":              "{{ params.cpu }}",
		"containers[1].ports[1].containerPort":              "{{ params.port }}",
		"containers[1].ports[1].hostPort":                   "{{params.port}}",
		"initContainers[0].resources.limits.nvidia.com/gpu": "{{ params.cpu }}",
	}
	if len(spec.TypedPlaceholders) != len(want) {
		t.Errorf("typed placeholders %v, want %v", spec.TypedPlaceholders, want)
	}
	for k, v := range want {
		if spec.TypedPlaceholders[k] != v {
			t.Errorf("%s = %q, want %q", k, spec.TypedPlaceholders[k], v)
		}
	}
	if got := spec.Containers[0].Resources.Requests.Memory(); got.Cmp(resource.MustParse("64Mi")) != 0 {
		t.Errorf("the plain value beside a placeholder is %v, want 64Mi", got)
	}
	if got := spec.Containers[1].Ports[0].ContainerPort; got != 80 {
		t.Errorf("a plain port is %d, want 80", got)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var again, orig map[string]any
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(typedSpec), &orig); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(again)
	o, _ := json.Marshal(orig)
	if string(a) != string(o) {
		t.Errorf("encoded again:\n%s\nwant (as decoded):\n%s", a, o)
	}
}

func TestASpecWithoutPlaceholdersHasNoTypedPlaceholders(t *testing.T) {
	var spec SidecarTemplateSpec
	if err := json.Unmarshal([]byte(`{"containers":[{"name":"a","image":"a:1","args":["{{ params.level }}"],"ports":[{"containerPort":80}]}]}`), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.TypedPlaceholders != nil {
		t.Errorf("a placeholder in args (a string field) was taken aside: %v", spec.TypedPlaceholders)
	}
}

// The engine names the parameter with its own expression; both must accept exactly what the CRD accepts.
func TestTypedPlaceholderPatternIsOneParameterAlone(t *testing.T) {
	re := regexp.MustCompile(TypedPlaceholderPattern)
	for s, ok := range map[string]bool{
		"{{ params.cpu }}": true, "{{params.cpu}}": true, "{{  params.proxy-cpu\t}}": true,
		"{{ params.cpu }}m": false, "1{{ params.cpu }}": false, "{{ pod.name }}": false, "{{ params.CPU }}": false,
		"{{ params.cpu }}{{ params.cpu }}": false, "{{ params. }}": false,
	} {
		if re.MatchString(s) != ok {
			t.Errorf("%q: matched %v, want %v", s, !ok, ok)
		}
	}
}
