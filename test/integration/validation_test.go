package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// invalidTemplates has one row per x-kubernetes-validations rule of the SidecarTemplate CRD (the XValidation
// markers in internal/api/v1alpha1/sidecartemplate_types.go), plus the enums, required fields and list-map keys
// (names unique within containers, initContainers and volumes). Specs are YAML so that a row can leave out
// fields the Go types would always send (a container's name). Name checks that CEL cannot afford (DNS labels,
// unique across containers and initContainers) are the injector's: see
// TestATemplateTheAPIServerAcceptsButTheInjectorCannotUseIsNotReadyAndDeniesPodsWithTheReason.
var invalidTemplates = []struct {
	name string
	spec string
	want []string // every string must appear in the API server's answer
	// schema is true for rows that test the OpenAPI schema (enums, required fields, list-map keys) rather than
	// a CEL rule; every other row must assert the message of a current XValidation rule.
	schema bool
}{
	// Spec-level rules.
	{"adds nothing", `selector: {}`,
		[]string{"a template must add something: set at least one of containers, initContainers, volumes, volumeMounts, env, envFrom, imagePullSecrets, annotations, labels or a namespace setting"}, false},
	{"targetContainers without volumeMounts, env or envFrom", `
containers: [{name: agent, image: busybox}]
targetContainers: [app]`,
		[]string{"targetContainers only makes sense with volumeMounts, env or envFrom"}, false},

	// containers.
	{"container without image", `containers: [{name: agent}]`,
		[]string{"spec.containers", "every container needs an image"}, false},
	{"container with empty image", `containers: [{name: agent, image: ""}]`,
		[]string{"spec.containers", "every container needs an image"}, false},
	{"container with restartPolicy", `containers: [{name: agent, image: busybox, restartPolicy: Always}]`,
		[]string{"spec.containers", "restartPolicy is only allowed on initContainers (restartPolicy: Always makes a native sidecar)"}, false},
	{"container without name", `containers: [{image: busybox}]`,
		[]string{"spec.containers[0].name", "Required value"}, true},
	{"duplicate container names", `containers: [{name: agent, image: busybox}, {name: agent, image: busybox}]`,
		[]string{"spec.containers[1]", "Duplicate value", `"agent"`}, true},

	// initContainers.
	{"init container without image", `initContainers: [{name: init}]`,
		[]string{"spec.initContainers", "every init container needs an image"}, false},
	{"init container with empty image", `initContainers: [{name: init, image: ""}]`,
		[]string{"spec.initContainers", "every init container needs an image"}, false},
	{"init container with restartPolicy other than Always", `initContainers: [{name: init, image: busybox, restartPolicy: OnFailure}]`,
		[]string{"spec.initContainers", "an init container's restartPolicy can only be Always (a native sidecar)"}, false},
	{"init container without name", `initContainers: [{image: busybox}]`,
		[]string{"spec.initContainers[0].name", "Required value"}, true},
	{"duplicate init container names", `initContainers: [{name: init, image: busybox}, {name: init, image: busybox}]`,
		[]string{"spec.initContainers[1]", "Duplicate value", `"init"`}, true},

	// volumes.
	{"duplicate volume names", `volumes: [{name: data, emptyDir: {}}, {name: data, emptyDir: {}}]`,
		[]string{"spec.volumes[1]", "Duplicate value", `"data"`}, true},
	{"volume without name", `volumes: [{emptyDir: {}}]`,
		[]string{"spec.volumes[0].name", "Required value"}, true},

	// Metadata.
	{"reserved annotation key", `annotations: {"sidecar.dev/status": "forged"}`,
		[]string{"spec.annotations", "annotation keys under sidecar.dev/ are reserved for the injector"}, false},
	{"reserved label key", `labels: {"sidecar.dev/injection": "enabled"}`,
		[]string{"spec.labels", "label keys under sidecar.dev/ are reserved for the injector"}, false},

	// dnsConfig.
	{"dnsConfig option named twice", `
dnsConfig: {options: [{name: ndots, value: "2"}, {name: ndots, value: "5"}]}`,
		[]string{"spec.dnsConfig.options[1]", "Duplicate value", `"ndots"`}, true},
	{"dnsConfig option without a name", `
dnsConfig: {options: [{value: "2"}]}`,
		[]string{"spec.dnsConfig.options[0].name", "Required value"}, true},

	// Enums.
	{"unknown failurePolicy", `
failurePolicy: Sometimes
containers: [{name: agent, image: busybox}]`,
		[]string{"spec.failurePolicy", `Unsupported value: "Sometimes"`, `"Fail"`, `"Ignore"`}, true},
	{"unknown containerPlacement", `
containerPlacement: Middle
containers: [{name: agent, image: busybox}]`,
		[]string{"spec.containerPlacement", `Unsupported value: "Middle"`, `"Last"`, `"First"`}, true},
	{"unknown initContainerPlacement", `
initContainerPlacement: Sideways
initContainers: [{name: init, image: busybox}]`,
		[]string{"spec.initContainerPlacement", `Unsupported value: "Sideways"`, `"Auto"`, `"First"`, `"Last"`}, true},
}

func TestInvalidSidecarTemplatesAreRejectedByTheAPIServerWithEachRulesMessage(t *testing.T) {
	ns := createNamespace(t, "invalid", nil)
	for i, row := range invalidTemplates {
		t.Run(row.name, func(t *testing.T) {
			var spec map[string]any
			if err := yaml.Unmarshal([]byte(row.spec), &spec); err != nil {
				t.Fatalf("row spec is not YAML: %v", err)
			}
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": v1alpha1.GroupVersion.String(),
				"kind":       "SidecarTemplate",
				"metadata":   map[string]any{"name": "invalid-" + strconv.Itoa(i), "namespace": ns},
				"spec":       spec,
			}}
			err := k8s.Create(ctxFor(t), obj)
			if err == nil {
				t.Fatalf("the API server accepted the template; want it rejected with %q", row.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("error is %v (reason %s), want Invalid", err, apierrors.ReasonForError(err))
			}
			for _, w := range row.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("answer does not contain %q:\n%s", w, err)
				}
			}
		})
	}

	t.Run("a valid template with the same shape is accepted", func(t *testing.T) {
		// Guards against rows that fail for a reason other than the one they test (e.g. a schema mistake that
		// rejects everything).
		createTemplate(t, ns, "valid", logShipperSpec())
	})
}

// TestEveryValidationRuleOfTheAPIHasARow keeps invalidTemplates in step with the API types: a new XValidation
// marker without a row here fails the suite.
func TestEveryValidationRuleOfTheAPIHasARow(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "internal", "api", "v1alpha1", "sidecartemplate_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	markers := regexp.MustCompile(`\+kubebuilder:validation:XValidation:rule=.*,message="((?:[^"\\]|\\.)*)"`).FindAllSubmatch(src, -1)
	if len(markers) == 0 {
		t.Fatal("found no XValidation markers; has the file moved?")
	}
	messages := map[string]bool{}
	for _, m := range markers {
		msg := string(m[1])
		messages[msg] = true
		covered := false
		for _, row := range invalidTemplates {
			for _, w := range row.want {
				if w == msg {
					covered = true
				}
			}
		}
		if !covered {
			t.Errorf("no row of invalidTemplates asserts the rule message %q", msg)
		}
	}
	for _, row := range invalidTemplates {
		if !row.schema && !slices.ContainsFunc(row.want, func(w string) bool { return messages[w] }) {
			t.Errorf("row %q asserts no current XValidation message (stale after a rule changed?)", row.name)
		}
	}
	t.Logf("%d XValidation rules, %d rows", len(markers), len(invalidTemplates))
}

// The API server accepts these templates (CEL over unbounded names exceeds its cost budget, so the CRD leaves
// them to the injector); the injector must say what is wrong: in the template's Ready condition, and to every
// pod that asks for it.
var injectorOnlyInvalid = []struct {
	name string
	spec v1alpha1.SidecarTemplateSpec
	want string // in the Ready condition's message and in the pod's denial
}{
	{"container name not a DNS label", v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{Name: "Bad_Name", Image: "busybox"}}}, `"Bad_Name"`},
	{"init container name longer than 63 characters", v1alpha1.SidecarTemplateSpec{
		InitContainers: []corev1.Container{{Name: strings.Repeat("a", 64), Image: "busybox"}}}, strings.Repeat("a", 64)},
	{"volume name not a DNS label", v1alpha1.SidecarTemplateSpec{
		Volumes: []corev1.Volume{{Name: "Data.Dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}, `"Data.Dir"`},
	{"container and init container share a name", v1alpha1.SidecarTemplateSpec{
		Containers:     []corev1.Container{{Name: "shared", Image: "busybox"}},
		InitContainers: []corev1.Container{{Name: "shared", Image: "busybox"}}}, `"shared"`},
}

func TestATemplateTheAPIServerAcceptsButTheInjectorCannotUseIsNotReadyAndDeniesPodsWithTheReason(t *testing.T) {
	ns := createNamespace(t, "injector-invalid", nil)
	for i, row := range injectorOnlyInvalid {
		t.Run(row.name, func(t *testing.T) {
			name := "broken-" + strconv.Itoa(i)
			tpl := createTemplate(t, ns, name, row.spec)

			pod := newPod(ns, "asks-for-"+name, withInject(name))
			var lastErr error
			testenv.Eventually(t, cacheDeadline, "the webhook knows the template", func() error {
				_, lastErr = tryCreatePod(t, pod, true)
				if lastErr != nil && strings.Contains(lastErr.Error(), "not found") {
					return lastErr // the webhook's cache has not seen the template yet
				}
				return nil
			})
			expectDenied(t, pod, lastErr, `sidecar template "`+name+`"`, row.want)
			t.Logf("pod denied: %v", lastErr)

			var cond *metav1.Condition
			testenv.Eventually(t, cacheDeadline, "the Ready condition reports the problem", func() error {
				var got v1alpha1.SidecarTemplate
				if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(tpl), &got); err != nil {
					return err
				}
				cond = meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
				switch {
				case cond == nil:
					return fmt.Errorf("no Ready condition; status %+v", got.Status)
				case got.Status.ObservedGeneration != got.Generation:
					return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
				case cond.Status != metav1.ConditionFalse:
					return fmt.Errorf("Ready is %s (%s: %s)", cond.Status, cond.Reason, cond.Message)
				}
				return nil
			})
			if !strings.Contains(cond.Message, row.want) {
				t.Errorf("Ready condition message %q does not name %s", cond.Message, row.want)
			}
			t.Logf("Ready=False %s: %s", cond.Reason, cond.Message)
		})
	}
}
