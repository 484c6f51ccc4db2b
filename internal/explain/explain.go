// Package explain is the engine of `sidecar-injector explain`: for pods read from a file it runs the same
// injection engine as the webhook against templates read from a file or from a cluster, and reports, for every
// candidate template, whether it applies and why not, what it would add, the warnings, the denial and the exact
// JSON patch, as text for people or as JSON for tools.
package explain

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

// DefaultNamespace is the namespace of pods and templates that name none, when --namespace is not given.
const DefaultNamespace = "default"

// Report is the JSON output of `explain -o json`. Its shape is stable: fields are only ever added.
type Report struct {
	Pods []Pod `json:"pods"`
}

// Pod is the explanation for one pod.
type Pod struct {
	// Source is where the pod was read: "FILE#N", N the 1-based position of the document in the file; Object
	// names the object that carries the pod: `Pod "web"`, `Deployment "api"`, `item 2 (Job "migrate")`.
	Source       string `json:"source"`
	Object       string `json:"object"`
	Namespace    string `json:"namespace"`
	Name         string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	// Result is what the webhook would answer: injected (a template is injected), unchanged (admitted as is),
	// denied, or error (the pod cannot be read; Error says why).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// SkipReason is set when the pod as a whole is out of reach (SystemNamespace, InjectorNamespace,
	// NamespaceDisabled, OptedOut).
	SkipReason inject.Reason `json:"skipReason,omitempty"`
	// Templates has one entry per candidate template and per requested name, in injection order.
	Templates   []Template `json:"templates"`
	Warnings    []string   `json:"warnings"`
	Denied      bool       `json:"denied"`
	DenyMessage string     `json:"denyMessage,omitempty"`
	// Patch is the RFC 6902 JSON patch the webhook would return for the pod (for a workload: for a pod created
	// from its pod template), [] when none.
	Patch json.RawMessage `json:"patch"`
}

// Template is the decision about one template for the pod.
type Template struct {
	// Namespace is empty for a requested name that matched no template.
	Namespace   string         `json:"namespace,omitempty"`
	Name        string         `json:"name"`
	ClusterWide bool           `json:"clusterWide"`
	Outcome     inject.Outcome `json:"outcome"`
	Reason      inject.Reason  `json:"reason"`
	// Applies is true when the pod receives the template (Injected) or already has it (AlreadyInjected). On a
	// denied pod (Pod.Denied) nothing is added: Injected then says what the template would have added.
	Applies bool `json:"applies"`
	// Message says why, in a sentence: the engine's message for Skipped and Denied, an explanation otherwise.
	Message string `json:"message"`
	// Added names what the template adds (Injected) or had added (AlreadyInjected).
	Added *inject.Added `json:"added,omitempty"`
	// Revision is the template's revision the pod gets or has; absent when the templates' revisions are not
	// known (templates read from a file).
	Revision int64 `json:"revision,omitempty"`
}

// RevisionSource is a Source that also knows the templates' revisions (a cluster's ControllerRevisions): with
// it, explain says which revision a pod gets under a canary, and recognises an earlier revision's sidecar.
type RevisionSource interface {
	Revisions(ctx context.Context, t *v1alpha1.SidecarTemplate) ([]inject.Revision, error)
}

// Source gives the templates and namespace labels that the webhook would see.
type Source interface {
	// Templates returns the templates that may serve pods in namespace: those of namespace and of the
	// injector's namespace (a source may return more; the engine ignores the others).
	Templates(ctx context.Context, namespace string) ([]v1alpha1.SidecarTemplate, error)
	// NamespaceLabels returns the labels of namespace, nil when unknown.
	NamespaceLabels(ctx context.Context, namespace string) (map[string]string, error)
}

// StaticSource is a Source from files: fixed templates and the labels given for the pods' namespace.
type StaticSource struct {
	Items  []v1alpha1.SidecarTemplate
	Labels map[string]string
}

// Templates implements Source.
func (s *StaticSource) Templates(context.Context, string) ([]v1alpha1.SidecarTemplate, error) {
	return s.Items, nil
}

// NamespaceLabels implements Source.
func (s *StaticSource) NamespaceLabels(context.Context, string) (map[string]string, error) {
	return s.Labels, nil
}

// PodInput is one pod read from a file.
type PodInput struct {
	// Source is "FILE#N"; Object names the object that carries the pod in that document, e.g. `Pod "web"`,
	// `item 2 (Deployment "api")`.
	Source string
	Object string
	// Raw is the pod as JSON, the bytes the patch is computed against.
	Raw []byte
	// Namespace is the namespace the pod is created in.
	Namespace string
}

// ReadTemplates reads SidecarTemplates (and Lists of them, as `kubectl get sct -o yaml` writes) from a YAML or
// JSON stream, as `inject --templates` does (workload.ReadTemplates: strictly, as the API server would take
// them; every error names the file, the document and the field). A template without a namespace gets
// defaultNamespace, one without a generation 1.
func ReadTemplates(r io.Reader, name, defaultNamespace string) ([]v1alpha1.SidecarTemplate, error) {
	read, err := workload.ReadTemplates(r, name, defaultNamespace)
	if err != nil {
		return nil, err
	}
	out := make([]v1alpha1.SidecarTemplate, len(read))
	for i, t := range read {
		out[i] = *t.Object
	}
	return out, nil
}

// ReadPods reads the pods in a YAML or JSON stream: Pods, and the pod templates of workloads (Deployment,
// StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) and Lists, as the offline inject
// command reads them (internal/workload). An object without a namespace is in defaultNamespace; an object whose
// namespace differs from explicitNamespace (when not empty: the --namespace flag) is an error, as with kubectl.
func ReadPods(r io.Reader, name, explicitNamespace, defaultNamespace string) ([]PodInput, error) {
	docs, err := workload.Split(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []PodInput
	for _, d := range docs {
		where := fmt.Sprintf("%s#%d", name, d.Index)
		if d.Err != nil {
			return nil, fmt.Errorf("%s: %w", where, d.Err)
		}
		pods, err := workload.Pods(d.Object, cmp.Or(explicitNamespace, defaultNamespace, DefaultNamespace))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		for _, p := range pods {
			if explicitNamespace != "" && p.Namespace != explicitNamespace {
				return nil, fmt.Errorf("%s: %s: its namespace %q does not match --namespace %q", where, p.Where(), p.Namespace, explicitNamespace)
			}
			out = append(out, PodInput{Source: where, Object: p.Where(), Raw: p.JSON(), Namespace: p.Namespace})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pod found", name)
	}
	return out, nil
}

// Explain runs the engine for every pod against the templates of src and builds the report.
func Explain(ctx context.Context, pods []PodInput, src Source, injectorNamespace string) (*Report, error) {
	rep := &Report{Pods: []Pod{}}
	for _, in := range pods {
		sts, err := src.Templates(ctx, in.Namespace)
		if err != nil {
			return nil, err
		}
		nsLabels, err := src.NamespaceLabels(ctx, in.Namespace)
		if err != nil {
			return nil, err
		}
		byKey := map[types.NamespacedName]*v1alpha1.SidecarTemplate{}
		compiled := make([]*inject.Template, 0, len(sts))
		revs, _ := src.(RevisionSource)
		for i := range sts {
			byKey[types.NamespacedName{Namespace: sts[i].Namespace, Name: sts[i].Name}] = &sts[i]
			var history []inject.Revision
			if revs != nil {
				if history, err = revs.Revisions(ctx, &sts[i]); err != nil {
					return nil, err
				}
			}
			compiled = append(compiled, inject.CompileRevisions(&sts[i], injectorNamespace, history))
		}
		res, err := inject.Inject(inject.Request{Pod: in.Raw, Namespace: in.Namespace, NamespaceLabels: nsLabels,
			InjectorNamespace: injectorNamespace, Templates: compiled})
		rep.Pods = append(rep.Pods, podReport(in, res, err, byKey, nsLabels, injectorNamespace))
	}
	return rep, nil
}

func podReport(in PodInput, res *inject.Result, err error, byKey map[types.NamespacedName]*v1alpha1.SidecarTemplate,
	nsLabels map[string]string, injectorNamespace string) Pod {
	var meta struct {
		Metadata struct {
			Name         string            `json:"name"`
			GenerateName string            `json:"generateName"`
			Labels       map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(in.Raw, &meta) // a pod the engine cannot read is reported below
	p := Pod{Source: in.Source, Object: in.Object, Namespace: in.Namespace, Name: meta.Metadata.Name,
		GenerateName: meta.Metadata.GenerateName, Templates: []Template{}, Warnings: []string{}, Patch: json.RawMessage("[]")}
	if err != nil {
		p.Result, p.Error = "error", err.Error()
		return p
	}
	p.SkipReason, p.Denied, p.DenyMessage = res.PodSkipReason, res.Denied, res.DenyMessage
	p.Warnings = append(p.Warnings, res.Warnings...)
	if patch, err := res.PatchJSON(); err != nil {
		p.Result, p.Error = "error", fmt.Sprintf("encode the patch: %v", err)
		return p
	} else if patch != nil {
		p.Patch = patch
	}
	p.Result = "unchanged"
	for _, d := range res.Decisions {
		t := Template{Namespace: d.Namespace, Name: d.Name, Outcome: d.Outcome, Reason: d.Reason, Message: d.Message,
			Added: d.Added, ClusterWide: d.Namespace != "" && d.Namespace == injectorNamespace,
			Applies: d.Outcome == inject.OutcomeInjected || d.Outcome == inject.OutcomeAlreadyInjected, Revision: d.Revision}
		st := byKey[types.NamespacedName{Namespace: d.Namespace, Name: d.Name}]
		switch {
		case t.Message == "":
			t.Message = why(d, st, in.Namespace, nsLabels, injectorNamespace)
		case d.Outcome == inject.OutcomeInjected || d.Reason == inject.ReasonAlreadyInjected:
			// The engine's message is the canary's choice of revision: after why the template applies.
			t.Message = why(d, st, in.Namespace, nsLabels, injectorNamespace) + "; it gets " + d.Message
		}
		if d.Outcome == inject.OutcomeInjected {
			p.Result = "injected"
		}
		p.Templates = append(p.Templates, t)
	}
	if p.Denied {
		p.Result = "denied"
	}
	return p
}

// why explains a decision that carries no message from the engine.
func why(d inject.Decision, st *v1alpha1.SidecarTemplate, namespace string, nsLabels map[string]string, injectorNamespace string) string {
	selector := func(s *metav1.LabelSelector) string {
		if s == nil {
			return "(none)"
		}
		str := metav1.FormatLabelSelector(s)
		if str == "" || str == "<none>" {
			return "{} (every pod)"
		}
		return str
	}
	switch d.Reason {
	case inject.ReasonRequested:
		return "requested by the pod's " + v1alpha1.AnnotationInject + " annotation"
	case inject.ReasonSelected:
		if st != nil {
			return fmt.Sprintf("its selector %s matches the pod's labels", selector(st.Spec.Selector))
		}
		return "its selector matches the pod's labels"
	case inject.ReasonAlreadyInjected:
		return "the pod already has what it adds (its " + v1alpha1.AnnotationStatus + " record names it)"
	case inject.ReasonNotRequested:
		return "it has no selector and the pod does not name it in " + v1alpha1.AnnotationInject
	case inject.ReasonSelectorMismatch:
		if st != nil {
			return fmt.Sprintf("its selector %s does not match the pod's labels, and the pod does not name it in %s",
				selector(st.Spec.Selector), v1alpha1.AnnotationInject)
		}
		return "its selector does not match the pod's labels"
	case inject.ReasonNamespaceSelectorMismatch:
		s := "(unknown)"
		if st != nil {
			s = selector(st.Spec.NamespaceSelector)
		}
		known := "the namespace's labels are not known"
		if nsLabels != nil {
			known = fmt.Sprintf("namespace %q has labels %s", namespace, formatLabels(nsLabels))
		}
		return fmt.Sprintf("cluster-wide, but its namespaceSelector %s does not select namespace %q (%s)", s, namespace, known)
	case inject.ReasonOutOfScope:
		return fmt.Sprintf("it lives in namespace %q; only templates of the pod's namespace %q and cluster-wide ones (namespace %q) serve it",
			d.Namespace, namespace, injectorNamespace)
	case inject.ReasonShadowed:
		return fmt.Sprintf("the template %s/%s of the pod's namespace has the same name and takes its place", namespace, d.Name)
	case inject.ReasonOptedOut:
		return fmt.Sprintf("the pod opts out of every template with %s: %q", v1alpha1.AnnotationInject, v1alpha1.OptOutValue)
	case inject.ReasonNamespaceDisabled:
		return fmt.Sprintf("namespace %q is labelled %s=%s", namespace, v1alpha1.LabelInjection, v1alpha1.LabelInjectionDisabled)
	case inject.ReasonSystemNamespace:
		return fmt.Sprintf("pods in %s are never injected", namespace)
	case inject.ReasonInjectorNamespace:
		return fmt.Sprintf("pods in the injector's own namespace %q are never injected", namespace)
	case inject.ReasonJobPolicySkip:
		return "the pod runs to completion (restartPolicy Never or OnFailure) and the template's spec.jobPolicy is Skip"
	case inject.ReasonInvalid:
		return "its selector or namespaceSelector cannot be parsed, so it selects no pod (see the template's Ready condition)"
	}
	return ""
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "(none)"
	}
	return labels.FormatLabels(m)
}
