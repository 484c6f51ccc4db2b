package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Options says how to compile.
type Options struct {
	// InjectorNamespace is the injector's own namespace: its templates are cluster-wide, its pods never injected.
	InjectorNamespace string
	// Name names the generated objects (and prefixes the validating ones). Default "sidecar-injector".
	Name string
	// Serve picks the templates the policy serves; the others still count for the override rule between
	// templates of one name (and for the labels templates add), as they do in the webhook. Nil serves every
	// template.
	Serve func(*v1alpha1.SidecarTemplate) bool
	// RejectUnknownNames adds a validation that denies a pod naming a template that serves nothing in its
	// namespace, as the webhook does. Only right when every template is served by these policies (compile for
	// GitOps without an injector); in mixed mode the webhook knows the templates the policies do not serve.
	RejectUnknownNames bool
	// Labels are put on every generated object.
	Labels map[string]string
}

// Key names a template.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Result is what Compile generated.
type Result struct {
	// Mutating and their bindings (same index) inject the served templates: one policy per namespace that has
	// served templates of its own (its templates and the cluster-wide ones, bound to that namespace), then one
	// for every other namespace (the cluster-wide templates). A pod meets exactly one of them.
	Mutating         []*admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBindings []*admissionregistrationv1.MutatingAdmissionPolicyBinding
	// Validating and their bindings deny (failurePolicy Fail) or warn (Ignore) when a served template that a pod
	// wants was not applied, saying why.
	Validating         []*admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// Served are the templates the policies serve, in injection order.
	Served []Key
	// NotCompilable are the templates asked for that a policy cannot serve exactly, with every reason.
	NotCompilable map[Key][]Unsupported
}

// PoliciesOf names the mutating policies that serve the template: its namespace's, or for a cluster-wide
// template, every one.
func (r *Result) PoliciesOf(k Key) []string {
	var out []string
	for _, mp := range r.Mutating {
		for _, m := range mp.Spec.Mutations {
			if m.JSONPatch != nil && strings.HasPrefix(m.JSONPatch.Expression, "// "+k.String()+"\n") {
				out = append(out, mp.Name)
				break
			}
		}
	}
	return out
}

// Objects returns the generated objects in the order to apply them: policies before their bindings.
func (r *Result) Objects() []runtime.Object {
	var out []runtime.Object
	for i := range r.Mutating {
		out = append(out, r.Mutating[i], r.MutatingBindings[i])
	}
	for i := range r.Validating {
		out = append(out, r.Validating[i], r.ValidatingBindings[i])
	}
	return out
}

// Compile generates the admission policies that serve the templates. See the package documentation for the
// design. A template that cannot be served exactly is left out, with its reasons in NotCompilable.
func Compile(templates []*v1alpha1.SidecarTemplate, opts Options) (*Result, error) {
	opts.Name = cmp.Or(opts.Name, "sidecar-injector")
	res := &Result{NotCompilable: map[Key][]Unsupported{}}
	type prepared struct {
		st *v1alpha1.SidecarTemplate
		t  *inject.Template
	}
	var serve []prepared
	local := map[string][]string{}                    // template name -> namespaces that have a namespaced template of that name
	cluster := map[string]*v1alpha1.SidecarTemplate{} // template name -> the cluster-wide template of that name
	for _, st := range templates {
		if st.Namespace != opts.InjectorNamespace {
			local[st.Name] = append(local[st.Name], st.Namespace)
		} else if cluster[st.Name] == nil {
			cluster[st.Name] = st
		}
	}
	for _, st := range templates {
		if opts.Serve != nil && !opts.Serve(st) {
			continue
		}
		t := inject.Compile(st, opts.InjectorNamespace)
		why := unsupported(t, &st.Spec)
		why = append(why, seesAddedLabels(st, templates, opts.InjectorNamespace)...)
		if len(why) > 0 {
			res.NotCompilable[Key{st.Namespace, st.Name}] = why
			continue
		}
		serve = append(serve, prepared{st, t})
	}
	slices.SortFunc(serve, func(a, b prepared) int {
		return cmp.Or(cmp.Compare(a.t.Order, b.t.Order), cmp.Compare(a.t.Namespace, b.t.Namespace), cmp.Compare(a.t.Name, b.t.Name))
	})
	// Partitioned by namespace: the API server evaluates every mutation of a policy it calls (each costs a
	// conversion of the pod, about a millisecond measured), so a pod must meet only the templates of its scope.
	var clusterWide []prepared
	var namespaces []string
	byNamespace := map[string][]prepared{}
	for _, p := range serve {
		if p.t.ClusterWide {
			clusterWide = append(clusterWide, p)
			continue
		}
		if byNamespace[p.t.Namespace] == nil {
			namespaces = append(namespaces, p.t.Namespace)
		}
		byNamespace[p.t.Namespace] = append(byNamespace[p.t.Namespace], p)
	}
	slices.Sort(namespaces)
	var all []*unit // every template once, in injection order across groups, for the validating policies
	group := func(ps []prepared) []*unit {
		ps = slices.SortedFunc(slices.Values(ps), func(a, b prepared) int {
			return cmp.Or(cmp.Compare(a.t.Order, b.t.Order), cmp.Compare(a.t.Namespace, b.t.Namespace), cmp.Compare(a.t.Name, b.t.Name))
		})
		var units []*unit
		for _, p := range ps {
			var r reach
			if p.t.ClusterWide && p.t.OverrideAllowed {
				r.shadowedIn = slices.Compact(slices.Sorted(slices.Values(local[p.t.Name])))
			}
			if c := cluster[p.t.Name]; !p.t.ClusterWide && c != nil && c.Spec.NamespaceOverride != v1alpha1.NamespaceOverrideAllow {
				r.keptOutBy = "true" // the cluster-wide template serves every namespace
				if c.Spec.NamespaceSelector != nil {
					r.keptOutBy = "(" + selectorCEL(c.Spec.NamespaceSelector, celNSLabels) + ")"
				}
			}
			u, err := newUnit(p.st, p.t, units, r)
			if err != nil {
				res.NotCompilable[Key{p.st.Namespace, p.st.Name}] = []Unsupported{{ReasonPerPodKey, err.Error()}}
				continue
			}
			units = append(units, u)
		}
		return units
	}
	for _, ns := range namespaces {
		units := group(append(slices.Clone(byNamespace[ns]), clusterWide...))
		for _, u := range units {
			if !u.t.ClusterWide {
				all = append(all, u)
			}
		}
		mp, mb := mutating(units, opts, opts.Name+"-"+ns, inNamespace(ns, opts))
		res.Mutating, res.MutatingBindings = append(res.Mutating, mp), append(res.MutatingBindings, mb)
	}
	if units := group(clusterWide); len(units) > 0 {
		all = append(all, units...)
		mp, mb := mutating(units, opts, opts.Name, outside(namespaces, opts))
		res.Mutating, res.MutatingBindings = append(res.Mutating, mp), append(res.MutatingBindings, mb)
	}
	slices.SortFunc(all, func(a, b *unit) int {
		return cmp.Or(cmp.Compare(a.t.Order, b.t.Order), cmp.Compare(a.t.Namespace, b.t.Namespace), cmp.Compare(a.t.Name, b.t.Name))
	})
	for _, u := range all {
		res.Served = append(res.Served, Key{u.t.Namespace, u.t.Name})
	}
	units := all
	if len(units) == 0 {
		return res, nil
	}
	for _, action := range []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny, admissionregistrationv1.Warn} {
		vap, vb := validating(units, opts, action, templates)
		if vap != nil {
			res.Validating, res.ValidatingBindings = append(res.Validating, vap), append(res.ValidatingBindings, vb)
		}
	}
	return res, nil
}

// podCreates matches pod CREATE requests only: every other request is left alone.
func podCreates() *admissionregistrationv1.MatchResources {
	return &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
				Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
		},
	}}}
}

// excluded keeps the namespaces that are never injected away from the bindings: the system namespaces, the
// injector's own and those labelled sidecar.dev/injection=disabled; and also, when given, others.
func excluded(opts Options, others ...string) *admissionregistrationv1.MatchResources {
	never := slices.Clone(v1alpha1.SystemNamespaces)
	if opts.InjectorNamespace != "" {
		never = append(never, opts.InjectorNamespace)
	}
	return &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: namespaceNameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: append(never, others...)},
		{Key: v1alpha1.LabelInjection, Operator: metav1.LabelSelectorOpNotIn, Values: []string{v1alpha1.LabelInjectionDisabled}},
	}}}
}

// namespaceNameLabel is the label the API server puts on every namespace, set to its name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// inNamespace binds a policy to one namespace (unless it is excluded).
func inNamespace(ns string, opts Options) *admissionregistrationv1.MatchResources {
	m := excluded(opts)
	m.NamespaceSelector.MatchExpressions = append(m.NamespaceSelector.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: namespaceNameLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{ns}})
	return m
}

// outside binds a policy to every namespace but the excluded ones and those that have their own policy.
func outside(namespaces []string, opts Options) *admissionregistrationv1.MatchResources {
	return excluded(opts, namespaces...)
}

// notOptedOut is false for a pod annotated sidecar.dev/inject: "false" (ASCII letters in any case, spaces
// around allowed).
func notOptedOut() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{{Name: "not-opted-out",
		Expression: fmt.Sprintf("%s.trim().lowerAscii() != %s", celAnnotation(v1alpha1.AnnotationInject), celQuote(v1alpha1.OptOutValue))}}
}

func meta(name string, opts Options) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: opts.Labels}
}

// mutating is the policy with one mutation per template, in injection order: the API server applies the
// mutations of one policy in order, which is what makes the containers' order and the record the webhook's.
func mutating(units []*unit, opts Options, name string, match *admissionregistrationv1.MatchResources) (
	*admissionregistrationv1.MutatingAdmissionPolicy, *admissionregistrationv1.MutatingAdmissionPolicyBinding) {
	p := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: meta(name, opts),
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: podCreates(),
			MatchConditions:  notOptedOut(),
			// An expression that cannot be evaluated is a bug of the compiler: the pod is not admitted half done.
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			// Another webhook or policy may add containers after this one: it runs again, and adds nothing twice
			// (a template the record names is not applied again).
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	for _, u := range units {
		patch := func(u *unit) string { return fmt.Sprintf("%s ? (%s) : []", u.applies(), strings.Join(u.ops, " +\n  ")) }
		expr := fmt.Sprintf("// %s\n%s", u.t.Key(), patch(u))
		if u.job != nil { // the pod's restartPolicy picks the patch: native sidecars for a pod that runs to completion
			expr = fmt.Sprintf("// %s\n%s ? (%s) :\n(%s)", u.t.Key(), completes, patch(u.job), patch(u))
		}
		p.Spec.Mutations = append(p.Spec.Mutations, admissionregistrationv1.Mutation{
			PatchType: admissionregistrationv1.PatchTypeJSONPatch,
			JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expr},
		})
	}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: meta(name, opts),
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: match,
		},
	}
	return p, b
}

// validating is the policy that says why a template a pod wants was not applied: Deny for the templates with
// failurePolicy Fail, Warn for Ignore. It sees the pod after every mutation; a template applied to it is named
// in its record.
func validating(units []*unit, opts Options, action admissionregistrationv1.ValidationAction, all []*v1alpha1.SidecarTemplate) (
	*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	policy := v1alpha1.FailurePolicyFail
	name := opts.Name + "-deny"
	if action == admissionregistrationv1.Warn {
		policy, name = v1alpha1.FailurePolicyIgnore, opts.Name+"-warn"
	}
	var vs []admissionregistrationv1.Validation
	for _, u := range units {
		if u.t.FailurePolicy != policy {
			continue
		}
		why := u.either(whyNotApplied)
		notSelected := celQuote("is cluster-wide but its namespaceSelector does not select namespace ")
		vs = append(vs, admissionregistrationv1.Validation{
			Expression: fmt.Sprintf("// %s\n!(%s && %s && !%s) && !(%s && %s)", u.t.Key(), u.scope, u.wanted, u.applied(), u.request, u.nsMiss),
			MessageExpression: fmt.Sprintf("%s + (%s && %s ? %s + '\"' + request.namespace + '\"' : %s)",
				celQuote(fmt.Sprintf("sidecar template %q: ", u.t.Name)), u.request, u.nsMiss, notSelected, why),
		})
	}
	if action == admissionregistrationv1.Deny && opts.RejectUnknownNames {
		vs = append(vs, unknownNames(all, opts))
	}
	if len(vs) == 0 {
		return nil, nil
	}
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: meta(name, opts),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: podCreates(),
			MatchConditions:  notOptedOut(),
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			Validations:      vs,
		},
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: meta(name, opts),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			MatchResources:    excluded(opts),
			ValidationActions: []admissionregistrationv1.ValidationAction{action},
		},
	}
	return p, b
}

// whyNotApplied is the CEL message that names every failure of the unit the pod meets, or says it was not
// applied.
func whyNotApplied(u *unit) string {
	var reasons []string
	for _, f := range u.failures {
		reasons = append(reasons, fmt.Sprintf("(%s ? [%s] : [])", f.cond, f.msg))
	}
	if len(reasons) == 0 {
		return "'it was not applied'"
	}
	return fmt.Sprintf("[%s].map(r, r.size() > 0 ? r.join('; ') : 'it was not applied')[0]", strings.Join(reasons, " + "))
}

// unknownNames denies a pod that requests a name no template serves in its namespace: neither one of its own
// namespace nor a cluster-wide one.
func unknownNames(all []*v1alpha1.SidecarTemplate, opts Options) admissionregistrationv1.Validation {
	var clusterWide, local []string
	for _, st := range all {
		if st.Namespace == opts.InjectorNamespace {
			clusterWide = append(clusterWide, st.Name)
		} else {
			local = append(local, st.Namespace+"/"+st.Name)
		}
	}
	slices.Sort(clusterWide)
	slices.Sort(local)
	known := fmt.Sprintf("(n in %s || (request.namespace + '/' + n) in %s)", celStringList(clusterWide), celStringList(local))
	names := fmt.Sprintf("%s.split(',').map(n, n.trim()).filter(n, n != '')", celAnnotation(v1alpha1.AnnotationInject))
	return admissionregistrationv1.Validation{
		Expression: fmt.Sprintf("%s.all(n, %s)", names, known),
		MessageExpression: fmt.Sprintf("%s.filter(n, !%s).map(n, 'sidecar template \"' + n + '\" requested by annotation %s was not found in namespace \"' + request.namespace + '\" nor among the cluster-wide templates').join('; ')",
			names, known, v1alpha1.AnnotationInject),
	}
}

// seesAddedLabels reports st as not compilable when its selector reads a label key that a template in its reach
// adds (itself included): one of its own namespace, a cluster-wide one, or for a cluster-wide st any template. A
// label key with a per-pod value could be any key.
func seesAddedLabels(st *v1alpha1.SidecarTemplate, all []*v1alpha1.SidecarTemplate, injectorNamespace string) []Unsupported {
	keys := selectorKeys(st.Spec.Selector)
	if len(keys) == 0 {
		return nil
	}
	var adders []string
	for _, o := range all {
		if o.Namespace != st.Namespace && o.Namespace != injectorNamespace && st.Namespace != injectorNamespace {
			continue // never meets st's pods
		}
		for k := range o.Spec.Labels {
			if keys[k] || placeholderRE.MatchString(k) {
				adders = append(adders, fmt.Sprintf("%s/%s adds label %q", o.Namespace, o.Name, k))
			}
		}
	}
	if len(adders) == 0 {
		return nil
	}
	slices.Sort(adders)
	return []Unsupported{{ReasonSelectorSeesAddedLabel, "spec.selector reads labels that templates add (" + strings.Join(slices.Compact(adders), ", ") +
		"): the webhook selects again on them within one admission, a policy cannot reproduce that order"}}
}

// selectorKeys are the label keys a selector reads.
func selectorKeys(sel *metav1.LabelSelector) map[string]bool {
	if sel == nil {
		return nil
	}
	keys := map[string]bool{}
	for k := range sel.MatchLabels {
		keys[k] = true
	}
	for _, r := range sel.MatchExpressions {
		keys[r.Key] = true
	}
	return keys
}
