package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"

	"github.com/spf13/cobra"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

// labelNamespaceName is the label the API server puts on every namespace, set to its name. Offline, the
// namespace of each object gets it too, so that namespaceSelectors written against it match as in a cluster.
const labelNamespaceName = "kubernetes.io/metadata.name"

type injectOptions struct {
	filename          string
	templates         string
	namespace         string
	injectorNamespace string
	namespaceLabels   map[string]string
}

// NewInjectCommand returns the `inject` command: offline injection of pods and workloads read from files.
func NewInjectCommand() *cobra.Command {
	o := &injectOptions{}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|- --templates FILE [--namespace NS]",
		Short: "Inject sidecars into pods and workloads read from files (offline)",
		Long: `Inject sidecars into Pods and workloads read from a file (or stdin with -f -), with the same engine as the
webhook, and write them injected as YAML on stdout, in input order, separated by ---.

The input is YAML (one or more documents) or JSON (one or more objects): Pods, Deployments, StatefulSets,
DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs and Lists of them. For a workload, its pod
template is injected as a pod created by it would be at admission; the sidecar.dev/status record lands in the
template, so the webhook leaves the pods it creates alone. Fields unknown to this build are kept.

The templates are SidecarTemplates read from --templates (YAML documents, JSON objects or a List). A
template without metadata.namespace is taken to be in --namespace; templates in --injector-namespace are
cluster-wide.

A document whose pod is denied, or that cannot be read, is reported on stderr with the file and the document's
number (counting from 1, empty documents not counted) and left out of the output; the other documents are
still written and the command exits non-zero. Engine warnings go to stderr, prefixed "Warning:".

Per-pod values that a pod template does not have yet (the pod's name, for instance) are substituted as the
webhook would see them for a pod without them: prefer the downward API for those.`,
		Example: `  sidecar-injector inject -f deploy.yaml --templates sidecars.yaml --namespace team-a
  cat web.json | sidecar-injector inject -f - --templates sidecars.yaml --namespace-labels env=prod | kubectl apply -f -`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.filename, "filename", "f", "", "file with the Pods and workloads to inject, or - for stdin (required)")
	f.StringVar(&o.templates, "templates", "", "file with the SidecarTemplates: YAML documents, JSON objects or a List (required)")
	f.StringVarP(&o.namespace, "namespace", "n", "default",
		"namespace of the objects and templates that do not set metadata.namespace")
	f.StringVar(&o.injectorNamespace, "injector-namespace", "sidecar-injector",
		"the injector's own namespace: templates there are cluster-wide, pods there are never injected")
	f.StringToStringVar(&o.namespaceLabels, "namespace-labels", nil,
		"labels of the namespace the objects are created in, key=value,... (for namespaceSelectors and "+
			v1alpha1.LabelInjection+"="+v1alpha1.LabelInjectionDisabled+"); "+labelNamespaceName+" is set to the namespace's name")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagRequired("templates")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("templates", "yaml", "yml", "json")
	return cmd
}

func (o *injectOptions) run(stdin io.Reader, stdout, stderr io.Writer) error {
	if o.filename == "-" && o.templates == "-" {
		return errors.New("-f and --templates cannot both read stdin")
	}
	if o.namespace == "" {
		return errors.New("--namespace cannot be empty")
	}
	templates, err := o.loadTemplates(stdin, stderr)
	if err != nil {
		return err
	}
	docs, err := readDocuments(o.filename, stdin)
	if err != nil {
		return err
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	failed, written := 0, 0
	for _, doc := range docs {
		obj, err := o.injectDocument(doc, templates, stderr)
		if err != nil {
			failed++
			fmt.Fprintln(stderr, err)
			continue
		}
		y, err := workload.Encode(obj)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: cannot encode as YAML: %v\n", o.documentName(doc, obj), err)
			continue
		}
		if written > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
		written++
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d documents could not be injected (left out of the output)", displayName(o.filename), failed, len(docs))
	}
	return nil
}

// injectDocument injects every pod of one document; the returned error is the message for stderr, naming the
// file, the document and the object.
func (o *injectOptions) injectDocument(doc workload.Document, templates []*inject.Template, stderr io.Writer) (map[string]any, error) {
	docName := o.documentName(doc, doc.Object)
	if doc.Err != nil {
		return nil, fmt.Errorf("%s: %v", docName, doc.Err)
	}
	pods, err := workload.Pods(doc.Object, o.namespace)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", docName, err)
	}
	var errs []string
	for _, p := range pods {
		where := docName
		if len(p.Items) > 0 {
			where += " " + p.Where()
		}
		res, err := inject.Inject(inject.Request{
			Pod:               p.JSON(),
			Namespace:         p.Namespace,
			NamespaceLabels:   o.labelsOf(p.Namespace),
			InjectorNamespace: o.injectorNamespace,
			Templates:         templates,
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "Warning: %s: %s\n", where, w)
		}
		if res.Denied {
			errs = append(errs, fmt.Sprintf("%s: %s", where, res.DenyMessage))
			continue
		}
		patch, err := res.PatchJSON()
		if err == nil {
			err = p.Apply(patch)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return doc.Object, nil
}

// labelsOf returns the labels of the namespace ns: --namespace-labels, and the name label every namespace has.
func (o *injectOptions) labelsOf(ns string) map[string]string {
	l := maps.Clone(o.namespaceLabels)
	if l == nil {
		l = map[string]string{}
	}
	if _, set := l[labelNamespaceName]; !set {
		l[labelNamespaceName] = ns
	}
	return l
}

func displayName(file string) string {
	if file == "-" {
		return "<stdin>"
	}
	return file
}

// documentName is `file: document N (Kind "name")`, or `file: document N (starting on line L)` when the document
// could not be decoded.
func (o *injectOptions) documentName(doc workload.Document, obj map[string]any) string {
	return documentName(displayName(o.filename), doc, obj)
}

func documentName(file string, doc workload.Document, obj map[string]any) string {
	name := fmt.Sprintf("%s: document %d", file, doc.Index)
	if obj != nil {
		return name + " (" + workload.Describe(obj) + ")"
	}
	return fmt.Sprintf("%s (starting on line %d)", name, doc.Line) // the decoder's line numbers count from there
}

func readDocuments(file string, stdin io.Reader) ([]workload.Document, error) {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	docs, err := workload.Split(r)
	if err != nil {
		if file == "-" {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return docs, nil
}

// loadTemplates reads and compiles the SidecarTemplates. An invalid but readable template is a warning (the
// engine then handles it under its failurePolicy, as the webhook would).
func (o *injectOptions) loadTemplates(stdin io.Reader, stderr io.Writer) ([]*inject.Template, error) {
	sts, err := readTemplates(o.templates, o.namespace, "nothing was injected", stdin, stderr)
	if err != nil {
		return nil, err
	}
	out := make([]*inject.Template, 0, len(sts))
	for _, st := range sts {
		t := inject.Compile(st.SidecarTemplate, o.injectorNamespace)
		if t.Err != nil {
			fmt.Fprintf(stderr, "Warning: %s: the template is invalid: %v\n", st.at, t.Err)
		}
		out = append(out, t)
	}
	return out, nil
}

// readTemplate is a SidecarTemplate read from a file, with where it was defined.
type readTemplate struct {
	*v1alpha1.SidecarTemplate
	at string
}

// readTemplates reads the SidecarTemplates of a file (- for stdin). Every document is decoded strictly: an
// unknown or duplicated field is an error naming the file, the document and the field. All errors are reported
// on stderr before it fails, with consequence. A template without metadata.namespace is taken to be in namespace.
func readTemplates(filename, namespace, consequence string, stdin io.Reader, stderr io.Writer) ([]readTemplate, error) {
	file := displayName(filename)
	docs, err := readDocuments(filename, stdin)
	if err != nil {
		return nil, err
	}
	var (
		out   []readTemplate
		errs  []string
		where = map[string]string{} // namespace/name -> where it was defined
	)
	add := func(at string, raw map[string]any) {
		st, err := decodeTemplate(raw)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", at, err))
			return
		}
		if st.Namespace == "" {
			st.Namespace = namespace
		}
		key := st.Namespace + "/" + st.Name
		if prev, dup := where[key]; dup {
			errs = append(errs, fmt.Sprintf("%s: SidecarTemplate %q in namespace %q is also defined at %s", at, st.Name, st.Namespace, prev))
			return
		}
		where[key] = strings.TrimPrefix(at, file+": ")
		out = append(out, readTemplate{st, at})
	}
	for _, doc := range docs {
		at := documentName(file, doc, doc.Object)
		if doc.Err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", at, doc.Err))
			continue
		}
		apiVersion, _ := doc.Object["apiVersion"].(string)
		kind, _ := doc.Object["kind"].(string)
		if (kind == "List" && apiVersion == "v1") || (kind == "SidecarTemplateList" && apiVersion == v1alpha1.GroupVersion.String()) {
			items, ok := doc.Object["items"].([]any)
			if !ok && doc.Object["items"] != nil {
				errs = append(errs, fmt.Sprintf("%s: items is not a list", at))
				continue
			}
			for i, it := range items {
				item, ok := it.(map[string]any)
				if !ok {
					errs = append(errs, fmt.Sprintf("%s item %d: not an object", at, i+1))
					continue
				}
				add(fmt.Sprintf("%s item %d (%s)", at, i+1, workload.Describe(item)), item)
			}
			continue
		}
		add(at, doc.Object)
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		return nil, fmt.Errorf("%s: the SidecarTemplates cannot be read (%d errors); %s", file, len(errs), consequence)
	}
	return out, nil
}

// decodeTemplate decodes one SidecarTemplate strictly: unknown and duplicated fields are errors that name the
// field by its path.
func decodeTemplate(obj map[string]any) (*v1alpha1.SidecarTemplate, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if kind != "SidecarTemplate" || apiVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("kind %q (apiVersion %q) is not a SidecarTemplate (apiVersion %s), a List or a SidecarTemplateList",
			kind, apiVersion, v1alpha1.GroupVersion.String())
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	st := &v1alpha1.SidecarTemplate{}
	strict, err := sigsjson.UnmarshalStrict(js, st, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if st.Name == "" {
		return nil, errors.New("metadata.name is required")
	}
	return st, nil
}
