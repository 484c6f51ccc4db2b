package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/policy"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const syncTimeout = 60 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ensureNamespace creates the namespace with the labels, or checks that it already has them: cases share
// namespaces, so two cases that want different labels on one would make the clusters race their caches.
func (c *cluster) ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ctx := ctxFor(t)
	var ns corev1.Namespace
	err := c.c.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) {
		ns = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := c.c.Create(ctx, &ns); err != nil {
			t.Fatalf("%s cluster: create namespace %s: %v", c.name, name, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s cluster: get namespace %s: %v", c.name, name, err)
	}
	for k, v := range labels {
		if ns.Labels[k] != v {
			t.Fatalf("namespace %s was created with labels %v; this case wants %v: give the case its own namespace", name, ns.Labels, labels)
		}
	}
}

// replaceTemplates deletes every SidecarTemplate and creates these, returning them as stored (defaulted, with
// the server's generation). A template the API server rejects is left out, with the reason.
func (c *cluster) replaceTemplates(t *testing.T, templates []*v1alpha1.SidecarTemplate) ([]*v1alpha1.SidecarTemplate, []string) {
	t.Helper()
	ctx := ctxFor(t)
	var l v1alpha1.SidecarTemplateList
	if err := c.c.List(ctx, &l); err != nil {
		t.Fatalf("%s cluster: list templates: %v", c.name, err)
	}
	for i := range l.Items {
		if err := c.c.Delete(ctx, &l.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("%s cluster: delete template: %v", c.name, err)
		}
	}
	var stored []*v1alpha1.SidecarTemplate
	var rejected []string
	for _, st := range templates {
		st = st.DeepCopy()
		if err := c.c.Create(ctx, st); err != nil {
			rejected = append(rejected, fmt.Sprintf("%s/%s: %v", st.Namespace, st.Name, err))
			continue
		}
		stored = append(stored, st)
	}
	return stored, rejected
}

// probePod is a pod in the probe namespace, whose name tells the sentinels which one it is.
func probePod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: probeNS, Name: name, Labels: map[string]string{"probe": "yes"}, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe-main-container", Image: "probe:1"}}},
	}
}

func (c *cluster) dryRun(t *testing.T, pod *corev1.Pod) (*corev1.Pod, error) {
	pod = pod.DeepCopy()
	err := c.c.Create(ctxFor(t), pod, client.DryRunAll)
	return pod, err
}

// waitForSentinelTemplate waits until the webhook serves the template sentinel-<id>: the template watch is
// ordered, so from then on the webhook's cache has every template created or deleted before it.
func (c *cluster) waitForSentinelTemplate(t *testing.T, id string) {
	t.Helper()
	name := "sentinel-" + id
	st := &v1alpha1.SidecarTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: probeNS, Name: name},
		Spec:       v1alpha1.SidecarTemplateSpec{Labels: map[string]string{"sentinel": id}},
	}
	if err := c.c.Create(ctxFor(t), st); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	testenv.Eventually(t, syncTimeout, "the webhook serves "+name, func() error {
		got, err := c.dryRun(t, probePod("probe-webhook", map[string]string{v1alpha1.AnnotationInject: name}))
		if err != nil {
			return err
		}
		if got.Labels["sentinel"] != id {
			return fmt.Errorf("probe pod labels %v", got.Labels)
		}
		return nil
	})
}

// applyPolicies creates or updates the compiled objects, each with a sentinel for this case, and waits until
// the API server enforces these versions: each mutating policy labels the probe pod probe-m in the namespace it
// is bound to, the validating ones deny probe-d and warn about probe-w, naming the case.
func (c *cluster) applyPolicies(t *testing.T, res *policy.Result, id string) {
	t.Helper()
	var objs []client.Object
	var probed []string // the namespace each mutating policy is probed in
	for i, mp := range res.Mutating {
		ns := probeNS
		for _, e := range res.MutatingBindings[i].Spec.MatchResources.NamespaceSelector.MatchExpressions {
			if e.Operator == metav1.LabelSelectorOpIn {
				ns = e.Values[0]
			}
		}
		probed = append(probed, ns)
		sentinel := fmt.Sprintf("request.namespace == %q && object.metadata.?name.orValue('') == 'probe-m' ? "+
			"[JSONPatch{op: 'add', path: '/metadata/labels/sentinel', value: %q}] : []", ns, id)
		mp.Spec.Mutations = append([]admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
			JSONPatch: &admissionregistrationv1.JSONPatch{Expression: sentinel}}}, mp.Spec.Mutations...)
		objs = append(objs, mp, res.MutatingBindings[i])
	}
	for _, action := range []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny, admissionregistrationv1.Warn} {
		vp, vb := validatingFor(res, action)
		probe := map[admissionregistrationv1.ValidationAction]string{admissionregistrationv1.Deny: "probe-d", admissionregistrationv1.Warn: "probe-w"}[action]
		vp.Spec.Validations = append([]admissionregistrationv1.Validation{{
			Expression: fmt.Sprintf("!(request.namespace == %q && object.metadata.?name.orValue('') == %q)", probeNS, probe),
			Message:    "sentinel " + id,
		}}, vp.Spec.Validations...)
		objs = append(objs, vp, vb)
	}
	for _, o := range objs {
		c.apply(t, o)
	}
	c.deleteOtherPolicies(t, objs)
	testenv.Eventually(t, syncTimeout, "the API server enforces the policies of case "+id, func() error {
		for _, ns := range probed {
			p := probePod("probe-m", nil)
			p.Namespace = ns
			got, err := c.dryRun(t, p)
			if err != nil {
				return err
			}
			if got.Labels["sentinel"] != id {
				return fmt.Errorf("probe-m in %s: labels %v", ns, got.Labels)
			}
		}
		if _, err := c.dryRun(t, probePod("probe-d", nil)); err == nil || !strings.Contains(err.Error(), "sentinel "+id) {
			return fmt.Errorf("probe-d: %v", err)
		}
		c.warnings.take()
		if _, err := c.dryRun(t, probePod("probe-w", nil)); err != nil {
			return err
		}
		if w := c.warnings.take(); !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "sentinel "+id) }) {
			return fmt.Errorf("probe-w warnings %v", w)
		}
		return nil
	})
}

// deleteOtherPolicies deletes the mutating policies and bindings of earlier cases that this one does not have.
func (c *cluster) deleteOtherPolicies(t *testing.T, keep []client.Object) {
	t.Helper()
	ctx := ctxFor(t)
	var mps admissionregistrationv1.MutatingAdmissionPolicyList
	var mbs admissionregistrationv1.MutatingAdmissionPolicyBindingList
	if err := c.c.List(ctx, &mps); err != nil {
		t.Fatal(err)
	}
	if err := c.c.List(ctx, &mbs); err != nil {
		t.Fatal(err)
	}
	kept := func(kind, name string) bool {
		return slices.ContainsFunc(keep, func(o client.Object) bool { return fmt.Sprintf("%T", o) == kind && o.GetName() == name })
	}
	for i := range mps.Items {
		if o := &mps.Items[i]; !kept(fmt.Sprintf("%T", o), o.Name) {
			_ = c.c.Delete(ctx, o)
		}
	}
	for i := range mbs.Items {
		if o := &mbs.Items[i]; !kept(fmt.Sprintf("%T", o), o.Name) {
			_ = c.c.Delete(ctx, o)
		}
	}
}

// validatingFor returns the compiled validating policy for action, or an empty one of the same name.
func validatingFor(res *policy.Result, action admissionregistrationv1.ValidationAction) (
	*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	for i, b := range res.ValidatingBindings {
		if slices.Contains(b.Spec.ValidationActions, action) {
			return res.Validating[i], b
		}
	}
	name := "sidecar-injector" + map[admissionregistrationv1.ValidationAction]string{admissionregistrationv1.Deny: "-deny", admissionregistrationv1.Warn: "-warn"}[action]
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: res.Mutating[0].Spec.MatchConstraints, FailurePolicy: ptr(admissionregistrationv1.Fail),
			},
		}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
				MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{}}, ValidationActions: []admissionregistrationv1.ValidationAction{action}},
		}
}

// apply creates the object or replaces the stored one's spec with it.
func (c *cluster) apply(t *testing.T, o client.Object) {
	t.Helper()
	ctx := ctxFor(t)
	existing := o.DeepCopyObject().(client.Object)
	err := c.c.Get(ctx, client.ObjectKeyFromObject(o), existing)
	switch {
	case apierrors.IsNotFound(err):
		err = c.c.Create(ctx, o)
	case err == nil:
		o.SetResourceVersion(existing.GetResourceVersion())
		err = c.c.Update(ctx, o)
	}
	if err != nil {
		t.Fatalf("%s cluster: apply %T %s: %v", c.name, o, o.GetName(), err)
	}
}

// createPod creates the pod as the case has it (unknown fields included) and returns it as stored, or the
// admission error.
func (c *cluster) createPod(t *testing.T, pod map[string]any) (*corev1.Pod, error) {
	t.Helper()
	ctx := ctxFor(t)
	u := &unstructured.Unstructured{Object: deepCopyJSON(pod)}
	if err := c.c.Create(ctx, u); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		_ = c.c.Delete(context.Background(), u, client.GracePeriodSeconds(0))
	})
	var got corev1.Pod
	if err := c.c.Get(ctx, client.ObjectKeyFromObject(u), &got); err != nil {
		t.Fatalf("%s cluster: get the pod just created: %v", c.name, err)
	}
	return &got, nil
}

func deepCopyJSON(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// comparable is the stored pod without what the API server sets per object (uid, times, versions, the random
// suffix of a generated name, wherever per-pod values copied it).
// revisionField is the record's "revision" field, as the webhook writes it (after the hash).
var revisionField = regexp.MustCompile(`,"revision":[0-9]+`)

func comparable(p *corev1.Pod) string {
	p = p.DeepCopy()
	p.UID, p.ResourceVersion, p.CreationTimestamp, p.ManagedFields, p.Generation = "", "", metav1.Time{}, nil, 0
	if rec, ok := p.Annotations[v1alpha1.AnnotationStatus]; ok {
		// The webhook's record also names the template's revision number, from its ControllerRevisions, which a
		// policy does not read; both name the revision by its hash, which is what drift and stale checks use.
		p.Annotations[v1alpha1.AnnotationStatus] = revisionField.ReplaceAllString(rec, "")
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	if p.GenerateName != "" && p.Name != "" {
		return strings.ReplaceAll(string(b), p.Name, p.GenerateName+"<generated>")
	}
	return string(b)
}

// errorText is the admission error without the prefix that names who denied (a webhook or a policy).
func errorText(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return se.ErrStatus.Message
	}
	return err.Error()
}
