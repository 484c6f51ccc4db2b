package workload

import (
	"encoding/json"
	"strings"
	"testing"
)

func decode(t *testing.T, y string) map[string]any {
	t.Helper()
	obj, err := Decode([]byte(y))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return obj
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const podTemplate = `
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: app, image: nginx}]`

func TestPodsFindsThePodOfEachKind(t *testing.T) {
	tests := []struct {
		name  string
		input string
		// want is the pod the engine sees, per pod found
		want  []string
		where []string
	}{
		{
			name:  "a Pod is its own pod, and gets the default namespace for the engine",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: nginx}]}\n",
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
			where: []string{`Pod "p"`},
		},
		{
			name:  "a Pod keeps its own namespace and its status",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team-a}\nspec: {}\nstatus: {phase: Pending}\n",
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"team-a"},"spec":{},"status":{"phase":"Pending"}}`},
		},
		{
			name:  "a Pod without metadata gets metadata with the namespace",
			input: "apiVersion: v1\nkind: Pod\nspec: {}\n",
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"default"},"spec":{}}`},
			where: []string{`Pod`},
		},
		{
			name:  "a Deployment's pod is spec.template, seen as a Pod in the Deployment's namespace",
			input: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  replicas: 2\n  template:" + podTemplate,
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"team-a"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
			where: []string{`Deployment "web"`},
		},
		{
			name:  "a StatefulSet's pod is spec.template",
			input: "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:" + podTemplate,
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
		},
		{
			name:  "a DaemonSet's pod is spec.template",
			input: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  template:" + podTemplate,
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
		},
		{
			name:  "a ReplicaSet's pod is spec.template",
			input: "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs}\nspec:\n  template:" + podTemplate,
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
		},
		{
			name:  "a Job's pod is spec.template",
			input: "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:" + podTemplate,
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
		},
		{
			name:  "a CronJob's pod is spec.jobTemplate.spec.template",
			input: "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n   spec:\n    template:" + strings.ReplaceAll(podTemplate, "\n    ", "\n      "),
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"app"}]}}`},
			where: []string{`CronJob "nightly"`},
		},
		{
			name:  "a template without metadata is seen with metadata holding only the namespace",
			input: "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: once-}\nspec: {template: {spec: {containers: []}}}\n",
			want:  []string{`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"default"},"spec":{"containers":[]}}`},
			where: []string{`Job generateName "once-"`},
		},
		{
			name: "a List yields the pods of its items in order, named by item number, lists nested",
			input: "apiVersion: v1\nkind: List\nitems:\n" +
				"- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {}}\n" +
				"- {apiVersion: apps/v1, kind: Deployment, metadata: {name: b, namespace: x}, spec: {template: {spec: {}}}}\n" +
				"- {apiVersion: v1, kind: List, items: [{apiVersion: v1, kind: Pod, metadata: {name: c}, spec: {}}]}\n",
			want: []string{
				`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"default"},"spec":{}}`,
				`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"x"},"spec":{}}`,
				`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c","namespace":"default"},"spec":{}}`,
			},
			where: []string{`item 1 (Pod "a")`, `item 2 (Deployment "b")`, `item 3.1 (Pod "c")`},
		},
		{
			name:  "an empty List has no pods",
			input: "apiVersion: v1\nkind: List\nitems: []\n",
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, err := Pods(decode(t, tt.input), "default")
			if err != nil {
				t.Fatalf("Pods: %v", err)
			}
			if len(pods) != len(tt.want) {
				t.Fatalf("got %d pods, want %d", len(pods), len(tt.want))
			}
			for i, p := range pods {
				if got := string(p.JSON()); got != tt.want[i] {
					t.Errorf("pod %d as the engine sees it:\n got %s\nwant %s", i+1, got, tt.want[i])
				}
				if tt.where != nil && p.Where() != tt.where[i] {
					t.Errorf("pod %d is described as %q, want %q", i+1, p.Where(), tt.where[i])
				}
			}
		})
	}
}

func TestPodsRefusesWhatItCannotInject(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{
			name:    "an object without a kind is an error",
			input:   "metadata: {name: web}\n",
			wantErr: "the object has no kind",
		},
		{
			name:    "a known kind in an unsupported apiVersion is an error naming both",
			input:   "apiVersion: extensions/v1beta1\nkind: Deployment\n",
			wantErr: `apiVersion "extensions/v1beta1" of Deployment is not supported; use apps/v1`,
		},
		{
			name:    "a workload without a pod template is an error naming the missing field",
			input:   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n",
			wantErr: "Deployment has no spec.template",
		},
		{
			name:    "a CronJob without a job template is an error naming the missing field",
			input:   "apiVersion: batch/v1\nkind: CronJob\nspec: {schedule: x}\n",
			wantErr: "CronJob has no spec.jobTemplate",
		},
		{
			name:    "a pod template that is not an object is an error naming the field",
			input:   "apiVersion: apps/v1\nkind: Deployment\nspec: {template: [1]}\n",
			wantErr: "spec: template is a list, not an object",
		},
		{
			name:    "template metadata that is not an object is an error naming the field",
			input:   "apiVersion: apps/v1\nkind: Deployment\nspec: {template: {metadata: x}}\n",
			wantErr: "spec.template.metadata is a string, not an object",
		},
		{
			name:    "metadata that is not an object is an error",
			input:   "apiVersion: v1\nkind: Pod\nmetadata: 3\n",
			wantErr: "metadata is a number, not an object",
		},
		{
			name:    "an error in a nested List names the item by its full position",
			input:   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: [{apiVersion: v1, kind: Pod}, {apiVersion: extensions/v1beta1, kind: Deployment, metadata: {name: old}}]}\n",
			wantErr: `item 1.2 (Deployment "old"): apiVersion "extensions/v1beta1" of Deployment is not supported`,
		},
		{
			name:    "a List item that is not an object is an error naming the item",
			input:   "apiVersion: v1\nkind: List\nitems: [a]\n",
			wantErr: "item 1 is a string, not an object",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pods(decode(t, tt.input), "default")
			if err == nil {
				t.Fatalf("Pods succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Pods error:\n got %q\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestPodsPassesKindsWithoutAPodThrough(t *testing.T) {
	for _, in := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: cfg}}\n",
	} {
		pods, err := Pods(decode(t, in), "default")
		if err != nil || len(pods) != 0 {
			t.Errorf("Pods(%q) = %d pods, %v; want no pods and no error", in, len(pods), err)
		}
	}
}

func TestApplyWritesThePatchedPodBack(t *testing.T) {
	addSidecar := `[
		{"op":"add","path":"/metadata/annotations","value":{"sidecar.dev/status":"{}"}},
		{"op":"add","path":"/spec/containers/-","value":{"name":"log-shipper","image":"fluent-bit"}},
		{"op":"add","path":"/spec/volumes","value":[{"name":"logs","emptyDir":{}}]}
	]`
	tests := []struct {
		name  string
		input string
		patch string
		want  string // the whole object after Apply, as JSON
	}{
		{
			name: "into a Deployment: the template's metadata and spec change, the rest and unknown fields stay, no namespace is added",
			input: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  someFutureWorkloadField: true\n" +
				"  template:\n    metadata: {labels: {app: web}}\n    spec:\n      someFutureField: 1\n      containers: [{name: app, image: nginx}]\n",
			patch: addSidecar,
			want: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":2,"someFutureWorkloadField":true,` +
				`"template":{"metadata":{"annotations":{"sidecar.dev/status":"{}"},"labels":{"app":"web"}},` +
				`"spec":{"containers":[{"image":"nginx","name":"app"},{"image":"fluent-bit","name":"log-shipper"}],"someFutureField":1,"volumes":[{"emptyDir":{},"name":"logs"}]}}}}`,
		},
		{
			name:  "into a template without metadata: metadata appears with only what the patch added",
			input: "apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: [{name: app, image: busybox}]}}}\n",
			patch: addSidecar,
			want: `{"apiVersion":"batch/v1","kind":"Job","spec":{"template":{"metadata":{"annotations":{"sidecar.dev/status":"{}"}},` +
				`"spec":{"containers":[{"image":"busybox","name":"app"},{"image":"fluent-bit","name":"log-shipper"}],"volumes":[{"emptyDir":{},"name":"logs"}]}}}}`,
		},
		{
			name:  "into a template that adds only to the spec: no empty metadata appears",
			input: "apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: [{name: app, image: busybox}]}}}\n",
			patch: `[{"op":"add","path":"/spec/shareProcessNamespace","value":true}]`,
			want:  `{"apiVersion":"batch/v1","kind":"Job","spec":{"template":{"spec":{"containers":[{"image":"busybox","name":"app"}],"shareProcessNamespace":true}}}}`,
		},
		{
			name: "into a CronJob: the job's pod template changes",
			input: "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: ops}\n" +
				"spec: {schedule: '@daily', jobTemplate: {spec: {template: {spec: {containers: [{name: app, image: busybox}]}}}}}\n",
			patch: `[{"op":"add","path":"/spec/containers/-","value":{"name":"s","image":"i"}}]`,
			want: `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly","namespace":"ops"},` +
				`"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"busybox","name":"app"},{"image":"i","name":"s"}]}}}},"schedule":"@daily"}}`,
		},
		{
			name:  "into a Pod without a namespace: the pod changes, and the engine's namespace is not written",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: nginx}]}\nstatus: {}\n",
			patch: addSidecar,
			want: `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"sidecar.dev/status":"{}"},"name":"p"},` +
				`"spec":{"containers":[{"image":"nginx","name":"app"},{"image":"fluent-bit","name":"log-shipper"}],"volumes":[{"emptyDir":{},"name":"logs"}]},"status":{}}`,
		},
		{
			name:  "into a Pod with a namespace: the namespace stays",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team-a}\nspec: {containers: []}\n",
			patch: `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`,
			want:  `{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"a":"b"},"name":"p","namespace":"team-a"},"spec":{"containers":[]}}`,
		},
		{
			name:  "an empty patch changes nothing",
			input: "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch: `[]`,
			want:  `{"apiVersion":"v1","kind":"Pod","spec":{}}`,
		},
		{
			name:  "a nil patch changes nothing",
			input: "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch: ``,
			want:  `{"apiVersion":"v1","kind":"Pod","spec":{}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.input)
			pods, err := Pods(obj, "default")
			if err != nil || len(pods) != 1 {
				t.Fatalf("Pods = %d pods, %v", len(pods), err)
			}
			if err := pods[0].Apply([]byte(tt.patch)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := toJSON(t, obj); got != tt.want {
				t.Errorf("after Apply:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestApplyPatchesEachPodOfAListInPlace(t *testing.T) {
	obj := decode(t, "apiVersion: v1\nkind: List\nitems:\n"+
		"- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: []}}\n"+
		"- {apiVersion: apps/v1, kind: Deployment, metadata: {name: b}, spec: {template: {spec: {containers: []}}}}\n")
	pods, err := Pods(obj, "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if err := p.Apply([]byte(`[{"op":"add","path":"/spec/containers/-","value":{"name":"s"}}]`)); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"apiVersion":"v1","items":[` +
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"s"}]}},` +
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"b"},"spec":{"template":{"spec":{"containers":[{"name":"s"}]}}}}],"kind":"List"}`
	if got := toJSON(t, obj); got != want {
		t.Errorf("after Apply:\n got %s\nwant %s", got, want)
	}
}

func TestApplyAppliesASecondPatchToThePodAsTheFirstLeftIt(t *testing.T) {
	obj := decode(t, "apiVersion: v1\nkind: Pod\nspec: {containers: []}\n")
	pods, _ := Pods(obj, "default")
	p := pods[0]
	for _, name := range []string{"a", "b"} {
		if err := p.Apply([]byte(`[{"op":"add","path":"/spec/containers/-","value":{"name":"` + name + `"}}]`)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := toJSON(t, obj), `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a"},{"name":"b"}]}}`; got != want {
		t.Errorf("after two patches:\n got %s\nwant %s", got, want)
	}
	if got, want := string(p.JSON()), `{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"default"},"spec":{"containers":[{"name":"a"},{"name":"b"}]}}`; got != want {
		t.Errorf("JSON after two patches:\n got %s\nwant %s", got, want)
	}
}

func TestApplyRefusesPatchesThatCannotBeWrittenBack(t *testing.T) {
	tests := []struct {
		name, input, patch, wantErr string
	}{
		{
			name:    "a patch that is not a JSON patch",
			input:   "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch:   `{"op":"add"}`,
			wantErr: "cannot decode the patch",
		},
		{
			name:    "a patch whose path does not exist",
			input:   "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch:   `[{"op":"add","path":"/spec/containers/-","value":{}}]`,
			wantErr: "cannot apply the patch to the pod",
		},
		{
			name:    "a patch adding a field that a pod template cannot carry",
			input:   "apiVersion: apps/v1\nkind: Deployment\nspec: {template: {spec: {}}}\n",
			patch:   `[{"op":"add","path":"/status","value":{}}]`,
			wantErr: "the patch adds status to the pod, which a pod template cannot carry",
		},
		{
			name:    "a patch changing the kind",
			input:   "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch:   `[{"op":"replace","path":"/kind","value":"Job"}]`,
			wantErr: "changes the pod's apiVersion or kind",
		},
		{
			name:    "a patch removing the spec of a Pod",
			input:   "apiVersion: v1\nkind: Pod\nspec: {}\n",
			patch:   `[{"op":"remove","path":"/spec"}]`,
			wantErr: "the patch removes the pod's spec",
		},
		{
			name:    "a patch removing the spec of a template",
			input:   "apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {}}}\n",
			patch:   `[{"op":"remove","path":"/spec"}]`,
			wantErr: "the patch removes the pod's spec",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.input)
			before := toJSON(t, obj)
			pods, err := Pods(obj, "default")
			if err != nil {
				t.Fatal(err)
			}
			err = pods[0].Apply([]byte(tt.patch))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Apply error = %v, want one containing %q", err, tt.wantErr)
			}
			if after := toJSON(t, obj); after != before {
				t.Errorf("a refused patch changed the object:\n%s\n%s", before, after)
			}
		})
	}
}
