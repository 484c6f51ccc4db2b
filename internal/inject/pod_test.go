package inject

import (
	"errors"
	"strings"
	"testing"
)

// readPodRequest is a request for a raw pod with one template that the pod asks for.
func readPodRequest(t *testing.T, pod string) Request {
	t.Helper()
	ts := compileAll(parseTemplates(t, []byte(tmpl("team-a", "log-shipper", ""))), injectorNS)
	return Request{Pod: []byte(pod), Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts}
}

// A duplicate member name is refused wherever the engine reads the pod or could patch it: which of the two values
// counts would be a guess, and the engine's guess and a patch tool's could differ. The error says so and names
// the member given twice.
func TestAPodWithADuplicateNameIsRefusedWhereTheEngineReadsIt(t *testing.T) {
	const ann = `"annotations":{"sidecar.dev/inject":"log-shipper"}`
	for _, tc := range []struct{ sentence, pod, where string }{
		{"metadata given twice", `{"metadata":{` + ann + `},"metadata":{},"spec":{"containers":[{"name":"app"}]}}`, "metadata"},
		{"a member the engine does not read given twice at the top", `{"kind":"Pod","kind":"Pod","metadata":{` + ann + `},"spec":{"containers":[{"name":"app"}]}}`, "kind"},
		{"an annotation given twice", `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper","sidecar.dev/inject":"x"}},"spec":{"containers":[{"name":"app"}]}}`, "metadata.annotations.sidecar.dev/inject"},
		{"a label given twice", `{"metadata":{"labels":{"app":"a","app":"b"},` + ann + `},"spec":{"containers":[{"name":"app"}]}}`, "metadata.labels.app"},
		{"labels given twice in metadata", `{"metadata":{"labels":{},"labels":{},` + ann + `},"spec":{"containers":[{"name":"app"}]}}`, "metadata.labels"},
		{"managedFields given twice in metadata", `{"metadata":{"managedFields":[],"managedFields":[],` + ann + `},"spec":{"containers":[{"name":"app"}]}}`, "metadata.managedFields"},
		{"containers given twice in spec", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app"}],"containers":[]}}`, "spec.containers"},
		{"a container's env given twice", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app","env":[],"env":[]}]}}`, "spec.containers[0].env"},
		{"an env var's value given twice", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app","env":[{"name":"A","value":"1","value":"2"}]}]}}`, "spec.containers[0].env[0].value"},
		{"a member the engine skips given twice in a container", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app","image":"a","image":"b"}]}}`, "spec.containers[0].image"},
		{"a name given twice inside a container's resources", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app","resources":{"limits":{},"limits":{}}}]}}`, "spec.containers[0].resources.limits"},
		{"a volume's name given twice", `{"metadata":{` + ann + `},"spec":{"containers":[{"name":"app"}],"volumes":[{"name":"a","name":"b"}]}}`, "spec.volumes[0].name"},
	} {
		t.Run(tc.sentence+" is refused, naming it", func(t *testing.T) {
			_, err := Inject(readPodRequest(t, tc.pod))
			var pe *PodError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PodError", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "duplicate") || !strings.Contains(msg, "(in "+tc.where+")") {
				t.Errorf("err = %q, want it to say duplicate and (in %s)", msg, tc.where)
			}
		})
	}
}

// metadata.managedFields is the one place where duplicates are not looked for: the engine neither reads nor patches
// it, and it is most of a large pod. It must still be JSON, in valid UTF-8.
func TestManagedFieldsAreSkippedWithoutLookingForDuplicates(t *testing.T) {
	pod := func(managed string) string {
		return `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"},"managedFields":` + managed +
			`},"spec":{"containers":[{"name":"app"}]}}`
	}
	t.Run("a duplicate name inside managedFields does not stop the injection", func(t *testing.T) {
		r, err := Inject(readPodRequest(t, pod(`[{"manager":"a","manager":"b","fieldsV1":{"f:x":{},"f:x":{}}}]`)))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Injected()) != 1 {
			t.Errorf("decisions = %+v, want log-shipper injected", r.Decisions)
		}
	})
	t.Run("null managedFields are read as absent", func(t *testing.T) {
		if _, err := Inject(readPodRequest(t, pod(`null`))); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct{ sentence, managed, says string }{
		{"a syntax error inside managedFields", `[{"manager":}]`, "invalid JSON"},
		{"managedFields cut short", `[{"manager":"a"`, "invalid JSON"},
		{"invalid UTF-8 inside managedFields", "[{\"manager\":\"\xff\"}]", "UTF-8"},
	} {
		t.Run(tc.sentence+" is still refused", func(t *testing.T) {
			_, err := Inject(readPodRequest(t, pod(tc.managed)))
			var pe *PodError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want a *PodError that says %q", err, tc.says)
			}
		})
	}
}
