package inject

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// selectionFields are the SidecarTemplateSpec fields that decide which pods get the template and where its
// additions go, and add nothing themselves. Every other spec field must be a payload field.
var selectionFields = map[string]bool{
	"Selector": true, "NamespaceSelector": true, "Order": true, "FailurePolicy": true,
	"ContainerPlacement": true, "InitContainerPlacement": true, "TargetContainers": true, "Parameters": true,
	"JobPolicy":         true, // what containers become in a pod that runs to completion (instance.go asNativeSidecars)
	"Mode":              true, // whether the webhook or an admission policy serves the template (store, policy); adds nothing itself
	"NamespaceOverride": true, // whether a namespaced template of the same name may replace it (selection.go)
	// Which revision a new pod gets (canary) and what becomes of an earlier revision's sidecar (revision.go).
	"UpdatePolicy": true,
}

// fieldSamples sets each payload field in a cluster-wide template (spec body, YAML); injecting it into a pod
// without that field must produce an operation whose path names the field. A new payload field without a
// sample here fails TestEveryPayloadFieldReachesThePatch.
var fieldSamples = map[string]string{
	"Containers":            "containers: [{name: s, image: s}]",
	"InitContainers":        "initContainers: [{name: i, image: i}]",
	"Volumes":               "volumes: [{name: v, emptyDir: {}}]",
	"VolumeMounts":          "volumes: [{name: v, emptyDir: {}}]\n  volumeMounts: [{name: v, mountPath: /v}]",
	"Env":                   "env: [{name: E, value: x}]",
	"EnvFrom":               "envFrom: [{configMapRef: {name: c}}]",
	"ImagePullSecrets":      "imagePullSecrets: [{name: p}]",
	"Annotations":           "annotations: {a.example.com/x: 'y'}",
	"Labels":                "labels: {l: v}",
	"ShareProcessNamespace": "shareProcessNamespace: true",
	"HostAliases":           "hostAliases: [{ip: 10.0.0.1, hostnames: [h]}]",
	"DNSConfig":             "dnsConfig: {nameservers: [10.0.0.2]}",
	"HostNetwork":           "hostNetwork: true",
	"HostPID":               "hostPID: true",
	"HostIPC":               "hostIPC: true",
	"TypedPlaceholders": "parameters: [{name: cpu, type: Quantity, default: '0.25'}]\n" +
		"  containers: [{name: s, image: s, resources: {limits: {cpu: '{{ params.cpu }}'}}}]",
}

// fieldProofs is, for a payload field that has no JSON name of its own, what its sample puts in the patch.
var fieldProofs = map[string]string{
	"TypedPlaceholders": `"limits":{"cpu":"250m"}`,
}

// The template's spec and what the engine adds are one list: a field added to SidecarTemplateSpec is either
// copied into payload (same name, type and JSON name) or declared above as one that adds nothing.
func TestEverySpecFieldIsAddedOrSelects(t *testing.T) {
	specT, payloadT := reflect.TypeFor[v1alpha1.SidecarTemplateSpec](), reflect.TypeFor[payload]()
	for f := range specT.Fields() {
		p, inPayload := payloadT.FieldByName(f.Name)
		switch {
		case inPayload && selectionFields[f.Name]:
			t.Errorf("spec.%s is both a payload field and a selection field: pick one", f.Name)
		case inPayload && (p.Type != f.Type || p.Tag.Get("json") != f.Tag.Get("json")):
			t.Errorf("payload.%s has type %v and tag %q; the spec's has %v and %q", f.Name, p.Type, p.Tag, f.Type, f.Tag)
		case !inPayload && !selectionFields[f.Name]:
			t.Errorf("spec.%s is new to the engine: add it to payload (and plan and patch it, see README.md), "+
				"or to selectionFields if it only decides which pods get the template", f.Name)
		}
	}
	for f := range payloadT.Fields() {
		if _, ok := specT.FieldByName(f.Name); !ok {
			t.Errorf("payload.%s is not a SidecarTemplateSpec field", f.Name)
		}
	}
}

// Every payload field, set alone in a template, reaches the patch: a field copied into payload but never
// planned or written is caught here.
func TestEveryPayloadFieldReachesThePatch(t *testing.T) {
	for f := range reflect.TypeFor[payload]().Fields() {
		t.Run(f.Name, func(t *testing.T) {
			sample, ok := fieldSamples[f.Name]
			if !ok {
				t.Fatalf("no sample for payload.%s in fieldSamples: add one that sets it", f.Name)
			}
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			sts := parseTemplates(t, []byte("metadata: {name: t, namespace: "+injectorNS+", generation: 1}\nspec:\n  "+sample))
			res, err := Inject(Request{
				Pod:               podJSON(t, "metadata: {name: p, annotations: {sidecar.dev/inject: t}}\nspec: {containers: [{name: app, image: a}]}"),
				Namespace:         "team-a",
				InjectorNamespace: injectorNS,
				Templates:         compileAll(sts, injectorNS),
			})
			if err != nil || res.Denied {
				t.Fatalf("inject: %v %s", err, res.DenyMessage)
			}
			if proof, ok := fieldProofs[f.Name]; ok {
				if !strings.Contains(string(mustPatchJSON(t, res)), proof) {
					t.Errorf("the patch does not contain %s: %s", proof, mustPatchJSON(t, res))
				}
				return
			}
			for _, op := range res.Patch {
				if strings.Contains(op.Path+"/", "/"+jsonName+"/") {
					return
				}
			}
			t.Errorf("no operation writes %s; the patch: %s", jsonName, mustPatchJSON(t, res))
		})
	}
}
