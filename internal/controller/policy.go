package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/policy"
)

// PolicyControllerName is the name of the controller that keeps the generated admission policies in step.
const PolicyControllerName = "sidecartemplate-policy"

// Reasons of the ServedByPolicy condition besides policy's Unsupported reasons.
const (
	// ReasonModeWebhook: spec.mode is Webhook (or absent): the webhook serves the template.
	ReasonModeWebhook = "ModeWebhook"
	// ReasonCompiled: a generated MutatingAdmissionPolicy serves the template.
	ReasonCompiled = "Compiled"
	// ReasonActivating: the template compiles, but the generated objects were written less than the activation
	// delay ago: the API server may not apply them yet, so the webhook keeps serving the template meanwhile.
	ReasonActivating = "Activating"
)

// DefaultPolicyActivation is how long the generated objects must have stayed unchanged before a template they
// serve is marked served by policy (ServedByPolicy True), which makes the webhook leave it alone. The API server
// loads admission policies through an informer and a refresh loop (about a second); until it has, a pod would
// get the template from neither. Found by TestMixedModeLeavesPolicyServedTemplatesToThePolicy (test/policy):
// marked at once, the first pod after the condition turned True came out without the policy's sidecar.
const DefaultPolicyActivation = 5 * time.Second

// managedByLabel marks the objects the controller generates: it deletes those no template needs any more.
var managedByLabel = map[string]string{"app.kubernetes.io/managed-by": "sidecar-injector"}

// The policy controller's RBAC is not generated from markers: it is granted only when Policy mode is enabled
// (the chart's policyMode.enabled), because whoever may create MutatingAdmissionPolicies may mutate any object
// of the cluster. See charts/sidecar-injector/templates/rbac.yaml.

// PolicyReconciler generates the admission policies that serve the templates whose spec.mode is Policy or Auto
// (package policy), keeps them in step with the templates (created, updated, deleted when no template needs
// them), and sets each template's ServedByPolicy condition. All templates compile into one policy, so every
// event reconciles the one key.
type PolicyReconciler struct {
	Client client.Client
	// Reader reads the owner without a cache (an informer on webhook configurations would need list and
	// watch; the chart grants get on the injector's own configuration, in selfManaged TLS mode);
	// mgr.GetAPIReader().
	Reader            client.Reader
	InjectorNamespace string
	// Name names the generated objects; "sidecar-injector" when empty.
	Name string
	// OwnerWebhookConfig, when set, names the MutatingWebhookConfiguration that owns the generated objects:
	// they are cluster-scoped and cannot be owned by a (namespaced) template, and removing the injector
	// (helm uninstall deletes the configuration) then lets the garbage collector delete them.
	OwnerWebhookConfig string
	// Activation is how long the generated objects must stay unchanged before a template they serve is marked
	// served by policy; zero means DefaultPolicyActivation.
	Activation time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// changedAt is when this controller last created or changed a generated object (one reconcile at a time:
	// the controller has one worker).
	changedAt time.Time
}

var policyKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "policies"}}

// SetupWithManager registers the controller: a template created, deleted or with a new spec (not its status,
// which changes with every pod injected: each reconcile compiles every template), and any change to a generated
// object (so that an edit or a deletion by hand is undone), reconciles the one key.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{policyKey}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(PolicyControllerName).
		Watches(&v1alpha1.SidecarTemplate{}, one, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&admissionregistrationv1.MutatingAdmissionPolicy{}, one).
		Watches(&admissionregistrationv1.MutatingAdmissionPolicyBinding{}, one).
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicy{}, one).
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, one).
		Complete(r)
}

// served says whether a template asks to be served by a policy.
func served(st *v1alpha1.SidecarTemplate) bool {
	return st.Spec.Mode == v1alpha1.ModePolicy || st.Spec.Mode == v1alpha1.ModeAuto
}

// Reconcile compiles every template, applies the generated objects, deletes the stale ones and writes the
// conditions.
func (r *PolicyReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var l v1alpha1.SidecarTemplateList
	if err := r.Client.List(ctx, &l); err != nil {
		return reconcile.Result{}, err
	}
	templates := make([]*v1alpha1.SidecarTemplate, len(l.Items))
	for i := range l.Items {
		templates[i] = &l.Items[i]
	}
	name := r.Name
	if name == "" {
		name = "sidecar-injector"
	}
	res, err := policy.Compile(templates, policy.Options{InjectorNamespace: r.InjectorNamespace, Name: name, Serve: served, Labels: managedByLabel})
	if err != nil {
		return reconcile.Result{}, err
	}
	objs := res.Objects()
	owner, err := r.owner(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	for _, o := range objs {
		co := o.(client.Object)
		if owner != nil {
			co.SetOwnerReferences([]metav1.OwnerReference{*owner})
		}
		changed, err := r.apply(ctx, co)
		if err != nil {
			return reconcile.Result{}, err
		}
		if changed {
			r.changedAt = now()
		}
	}
	if err := r.deleteStale(ctx, objs); err != nil {
		return reconcile.Result{}, err
	}
	wait := cmp.Or(r.Activation, DefaultPolicyActivation) - now().Sub(r.changedAt)
	activating, err := r.writeConditions(ctx, templates, res, wait > 0)
	if err != nil || !activating {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: wait}, nil
}

func (r *PolicyReconciler) owner(ctx context.Context) (*metav1.OwnerReference, error) {
	if r.OwnerWebhookConfig == "" {
		return nil, nil
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: r.OwnerWebhookConfig}, &cfg); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			// Not installed by the chart (tests, local runs), or external TLS, where the chart does not let the
			// injector read its configuration: nothing owns them (delete them by label after uninstalling).
			return nil, nil
		}
		return nil, err
	}
	return &metav1.OwnerReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration",
		Name: cfg.Name, UID: cfg.UID}, nil
}

// apply creates the object, or updates the stored one when its spec, labels or owners differ; changed says
// whether the stored object changed.
func (r *PolicyReconciler) apply(ctx context.Context, o client.Object) (changed bool, err error) {
	existing := o.DeepCopyObject().(client.Object)
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(o), existing)
	if apierrors.IsNotFound(err) {
		return true, r.Client.Create(ctx, o)
	}
	if err != nil {
		return false, err
	}
	if specOf(existing) != nil && equality.Semantic.DeepEqual(specOf(existing), specOf(o)) &&
		equality.Semantic.DeepEqual(existing.GetLabels(), o.GetLabels()) &&
		equality.Semantic.DeepEqual(existing.GetOwnerReferences(), o.GetOwnerReferences()) {
		return false, nil
	}
	o.SetResourceVersion(existing.GetResourceVersion())
	if err := r.Client.Update(ctx, o); err != nil {
		return false, err
	}
	// The API server defaults fields of the stored spec that the generated one leaves out, so they compare
	// unequal and the update is sent; it changes nothing (no new resourceVersion) unless the content differs.
	return o.GetResourceVersion() != existing.GetResourceVersion(), nil
}

func specOf(o client.Object) any {
	switch t := o.(type) {
	case *admissionregistrationv1.MutatingAdmissionPolicy:
		return &t.Spec
	case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
		return &t.Spec
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return &t.Spec
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return &t.Spec
	}
	return nil
}

// deleteStale deletes the generated objects that are not in keep: nothing is left behind when templates leave
// Policy mode or are deleted.
func (r *PolicyReconciler) deleteStale(ctx context.Context, keep []runtime.Object) error {
	wanted := map[string]bool{}
	for _, o := range keep {
		co := o.(client.Object)
		wanted[fmt.Sprintf("%T/%s", co, co.GetName())] = true
	}
	lists := []client.ObjectList{&admissionregistrationv1.MutatingAdmissionPolicyBindingList{}, &admissionregistrationv1.MutatingAdmissionPolicyList{},
		&admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}, &admissionregistrationv1.ValidatingAdmissionPolicyList{}}
	for _, l := range lists {
		if err := r.Client.List(ctx, l, client.MatchingLabels(managedByLabel)); err != nil {
			return err
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return err
		}
		for _, it := range items {
			co := it.(client.Object)
			if wanted[fmt.Sprintf("%T/%s", co, co.GetName())] {
				continue
			}
			if err := r.Client.Delete(ctx, co); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// writeConditions sets the ServedByPolicy condition of every template whose condition changes. pending says the
// generated objects changed less than the activation delay ago: a served template not yet marked served for its
// generation then waits (Activating), and activating reports that one does.
func (r *PolicyReconciler) writeConditions(ctx context.Context, templates []*v1alpha1.SidecarTemplate, res *policy.Result, pending bool) (activating bool, err error) {
	for _, st := range templates {
		c := servedCondition(st, res)
		if cur := meta.FindStatusCondition(st.Status.Conditions, c.Type); pending && c.Status == metav1.ConditionTrue &&
			(cur == nil || cur.Status != metav1.ConditionTrue || cur.ObservedGeneration != st.Generation) {
			c.Status, c.Reason, activating = metav1.ConditionFalse, ReasonActivating, true
			c.Message = "a generated MutatingAdmissionPolicy will serve the template once the API server has loaded it (a few seconds after it is written); the webhook serves it meanwhile"
		}
		if cur := meta.FindStatusCondition(st.Status.Conditions, c.Type); cur != nil && cur.Status == c.Status &&
			cur.Reason == c.Reason && cur.Message == c.Message && cur.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		st = st.DeepCopy()
		meta.SetStatusCondition(&st.Status.Conditions, c)
		if err := r.Client.Status().Update(ctx, st); err != nil && !apierrors.IsNotFound(err) {
			return activating, err // a conflict is retried: the reconcile returns the error and runs again
		}
	}
	return activating, nil
}

// servedCondition says what serves the template.
func servedCondition(st *v1alpha1.SidecarTemplate, res *policy.Result) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionServedByPolicy, ObservedGeneration: st.Generation}
	key := policy.Key{Namespace: st.Namespace, Name: st.Name}
	if slices.Contains(res.Served, key) {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonCompiled
		c.Message = fmt.Sprintf("served by MutatingAdmissionPolicy %s; the webhook leaves the template alone",
			strings.Join(res.PoliciesOf(key), ", "))
		return c
	}
	c.Status = metav1.ConditionFalse
	why, compiled := res.NotCompilable[key]
	if !served(st) || !compiled {
		c.Reason, c.Message = ReasonModeWebhook, "spec.mode is Webhook: the webhook serves the template"
		return c
	}
	var msgs []string
	for _, u := range why {
		msgs = append(msgs, u.Reason+": "+u.Message)
	}
	c.Reason = why[0].Reason
	if st.Spec.Mode == v1alpha1.ModeAuto {
		c.Message = "the webhook serves the template, a policy cannot: " + strings.Join(msgs, "; ")
	} else {
		c.Message = "spec.mode is Policy but a policy cannot serve the template; until it can, the webhook serves it: " + strings.Join(msgs, "; ")
	}
	return c
}
