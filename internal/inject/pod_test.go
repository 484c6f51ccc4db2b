package inject

import (
	"errors"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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

// Around the pod only JSON's whitespace is allowed: a form feed, a vertical tab or a no-break space after (or
// before) the object is not JSON, and a patch tool would refuse the pod the engine had accepted.
func TestAPodSurroundedByWhitespaceJSONDoesNotAllowIsRefused(t *testing.T) {
	const pod = `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`
	for _, tc := range []struct{ sentence, raw string }{
		{"a form feed after the object", pod + "\f"},
		{"a vertical tab after the object", pod + "\v"},
		{"a no-break space after the object", pod + "\u00a0"},
		{"a form feed before the object", "\f" + pod},
	} {
		t.Run(tc.sentence+" is refused", func(t *testing.T) {
			var pe *PodError
			if _, err := Inject(readPodRequest(t, tc.raw)); !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PodError", err)
			}
		})
	}
	t.Run("spaces, tabs and line ends around the object are allowed", func(t *testing.T) {
		if _, err := Inject(readPodRequest(t, " \t\r\n"+pod+" \t\r\n")); err != nil {
			t.Fatal(err)
		}
	})
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
	t.Run("what follows managedFields is read, and a duplicate name there is refused", func(t *testing.T) {
		after := `{"metadata":{"managedFields":[{"manager":"a","manager":"b"}],"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`
		if r, err := Inject(readPodRequest(t, after)); err != nil || len(r.Injected()) != 1 {
			t.Fatalf("err = %v, want log-shipper injected", err)
		}
		dup := `{"metadata":{"managedFields":[{"manager":"a"}],"labels":{"a":"1","a":"2"}},"spec":{"containers":[{"name":"app"}]}}`
		if _, err := Inject(readPodRequest(t, dup)); err == nil || !strings.Contains(err.Error(), "duplicate") {
			t.Fatalf("err = %v, want the duplicate label refused", err)
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

// readKeyed is hand-written (the env vars, mounts and volumes of a pod are most of what readPod reads): it must
// read every list as json v2 reads the same objects as plain structs, values and errors alike.
func TestKeyedObjectsReadAsJSONv2Does(t *testing.T) {
	lists := []string{
		`[]`, `null`, `[{}]`, `[null]`, `[{"name":"A"}]`, `[{"name":"A","value":"x"},{"name":"B","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]`,
		`[{"value":"x","name":"A"}]`, `[{"na\u006de":"A"}]`, `[{"name":"\u00e9\n\"q\""}]`, `[{"name":null}]`, `[{"Name":"A"}]`, `[{"name ":"A"}]`,
		`[{"name":"A","name":"B"}]`, `[{"name":"A","na\u006de":"B"}]`, `[{"value":1,"value":2,"name":"A"}]`, `[{"name":"A","x":{"y":1,"y":2}}]`,
		`[{"name":1}]`, `[{"name":{"a":"b"}}]`, `[{"name":["A"]}]`, `[{"name":true}]`, `["A"]`, `[1]`, `[[]]`, `{"name":"A"}`, `"A"`,
		`[{"name":"A"`, `[{"name":}]`, `[{"name":"A",}]`, "[{\"name\":\"\xff\"}]", `[{"x":[1,2,{"name":"no"}],"name":"yes"}]`,
		`[{"name":"A","name":null}]`, `[{"name":"` + strings.Repeat("n", 100) + `"}]`, `[{"name":"\ud800"}]`,
	}
	for _, list := range lists {
		t.Run("name "+list, func(t *testing.T) {
			var want []struct {
				Name string `json:"name"`
			}
			wantErr := jsonv2.Unmarshal([]byte(list), &want)
			var got viewList[namedView]
			compareKeyed(t, jsonv2.Unmarshal([]byte(list), &got), wantErr, got, want, func(v namedView) string { return v.Name },
				func(i int) string { return want[i].Name })
		})
		mounts := strings.ReplaceAll(list, "name", "mountPath")
		t.Run("mountPath "+mounts, func(t *testing.T) {
			var want []struct {
				MountPath string `json:"mountPath"`
			}
			wantErr := jsonv2.Unmarshal([]byte(mounts), &want)
			var got viewList[mountView]
			compareKeyed(t, jsonv2.Unmarshal([]byte(mounts), &got), wantErr, got, want, func(v mountView) string { return v.MountPath },
				func(i int) string { return want[i].MountPath })
		})
	}
}

func compareKeyed[T, W any](t *testing.T, gotErr, wantErr error, got []T, want []W, key func(T) string, wantKey func(int) string) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("err = %v, json v2's = %v", gotErr, wantErr)
	}
	if gotErr != nil {
		if g, w := describeJSONError(gotErr).Error(), describeJSONError(wantErr).Error(); g != w {
			t.Errorf("err = %q, json v2's = %q", g, w)
		}
		return
	}
	if len(got) != len(want) || (got == nil) != (want == nil) {
		t.Fatalf("got %d elements (nil: %v), json v2 reads %d (nil: %v)", len(got), got == nil, len(want), want == nil)
	}
	for i := range got {
		if key(got[i]) != wantKey(i) {
			t.Errorf("[%d] = %q, json v2 reads %q", i, key(got[i]), wantKey(i))
		}
	}
}

// readContainer, hand-written like readKeyed, reads containers as json v2 reads them into plain structs.
func TestContainersReadAsJSONv2Does(t *testing.T) {
	type plainContainer struct {
		Name string `json:"name"`
		Env  []struct {
			Name string `json:"name"`
		} `json:"env"`
		EnvFrom      []jsontext.Value `json:"envFrom"`
		VolumeMounts []struct {
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
	for _, list := range []string{
		`[]`, `null`, `[null]`, `[{}]`, `[{"name":"app"}]`, `[{"name":"app","image":"x","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"1"}}}]`,
		`[{"name":"app","env":[{"name":"A","value":"1"}],"envFrom":[{"configMapRef":{"name":"c"}}],"volumeMounts":[{"name":"v","mountPath":"/m"}]}]`,
		`[{"env":null,"envFrom":null,"volumeMounts":null,"name":null}]`, `[{"na\u006de":"app","\u0065nv":[]}]`, `[{"Name":"app","Env":[{"name":"A"}]}]`,
		`[{"name":"a"},{"name":"b","env":[]},null,{"name":"c"}]`,
		`[{"name":"app","name":"x"}]`, `[{"env":[],"env":[]}]`, `[{"name":"app","image":"a","image":"b"}]`, `[{"name":"app","probe":{"x":1,"x":2}}]`,
		`["app"]`, `[1]`, `[[]]`, `[{"name":1}]`, `[{"env":{}}]`, `[{"env":[1]}]`, `[{"envFrom":{}}]`, `[{"volumeMounts":"x"}]`,
		`[{"name":"app"`, `[{"name":"app",}]`, "[{\"name\":\"\xff\"}]", `[{"env":[{"name":"A"}],"x":[}]`, `[{"x":{"a":[1,{"b":"\ud800"}]}}]`,
	} {
		t.Run(list, func(t *testing.T) {
			var got viewList[*containerView]
			var want []*plainContainer
			gotErr, wantErr := jsonv2.Unmarshal([]byte(list), &got), jsonv2.Unmarshal([]byte(list), &want)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("err = %v, json v2's = %v", gotErr, wantErr)
			}
			if gotErr != nil {
				if g, w := describeJSONError(gotErr).Error(), describeJSONError(wantErr).Error(); g != w {
					t.Errorf("err = %q, json v2's = %q", g, w)
				}
				return
			}
			g, err := jsonv2.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			w, err := jsonv2.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if string(g) != string(w) {
				t.Errorf("read as %s\njson v2 reads %s", g, w)
			}
		})
	}
}
