package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

// labelNamespaceName is the label the API server puts on every namespace, set to its name. Offline, the
// namespace of each object gets it too, so that namespaceSelectors written against it match as in a cluster.
const labelNamespaceName = "kubernetes.io/metadata.name"

type injectOptions struct {
	filenames         []string
	templates         string
	namespace         string
	injectorNamespace string
	namespaceLabels   map[string]string
	output            string
	strict            bool
}

// NewInjectCommand returns the `inject` command: offline injection of pods and workloads read from files.
func NewInjectCommand() *cobra.Command {
	o := &injectOptions{}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|DIR|- [-f ...] --templates FILE [--namespace NS] [--strict]",
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

A document that asks for injection where nothing reads the request — sidecar.dev/inject on a workload's own
metadata instead of its pod template's, or on a kind inject does not know (an Argo Rollout, a PodTemplate) — is
reported on stderr as a warning and written unchanged in that respect; with --strict the command then exits
non-zero. The default is a warning so that pipelines over mixed manifests (where such annotations may be meant
for another tool) keep working; CI should pass --strict.

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
	f.StringArrayVarP(&o.filenames, "filename", "f", nil, "file or directory (its .yaml, .yml and .json files, not recursively) "+
		"with the Pods and workloads to inject, or - for stdin; repeat for several, read in order (required)")
	f.StringVar(&o.templates, "templates", "", "file with the SidecarTemplates: YAML documents, JSON objects or a List (required)")
	f.StringVarP(&o.namespace, "namespace", "n", "default",
		"namespace of the objects and templates that do not set metadata.namespace")
	f.StringVar(&o.injectorNamespace, "injector-namespace", "sidecar-injector",
		"the injector's own namespace: templates there are cluster-wide, pods there are never injected")
	f.StringToStringVar(&o.namespaceLabels, "namespace-labels", nil,
		"labels of the namespace the objects are created in, key=value,... (for namespaceSelectors and "+
			v1alpha1.LabelInjection+"="+v1alpha1.LabelInjectionDisabled+"); "+labelNamespaceName+" is set to the namespace's name")
	f.BoolVar(&o.strict, "strict", false, "exit non-zero when a document asks for injection where nothing reads the request "+
		"(an unknown kind, or "+v1alpha1.AnnotationInject+" on a workload's own metadata); without it they are warnings")
	f.StringVarP(&o.output, "output", "o", "yaml",
		"output format: yaml (documents separated by ---) or json (the object, or a v1 List of them when there are several)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagRequired("templates")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("templates", "yaml", "yml", "json")
	return cmd
}

func (o *injectOptions) run(stdin io.Reader, stdout, stderr io.Writer) error {
	if slices.Contains(o.filenames, "-") && o.templates == "-" {
		return errors.New("-f and --templates cannot both read stdin")
	}
	if o.namespace == "" {
		return errors.New("--namespace cannot be empty")
	}
	if o.output != "yaml" && o.output != "json" {
		return fmt.Errorf("--output %q is not supported: use yaml or json", o.output)
	}
	templates, err := o.loadTemplates(stdin, stderr)
	if err != nil {
		return err
	}
	files, err := expandInputs(o.filenames)
	if err != nil {
		return err
	}
	var docs []fileDoc
	for _, file := range files {
		read, err := readDocuments(file, stdin)
		if err != nil {
			return err
		}
		for _, d := range read {
			docs = append(docs, fileDoc{Document: d, file: file})
		}
	}
	inputs := fileDisplayName(strings.Join(files, ", "))

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	failed, written, misplaced := 0, 0, 0
	var injected []map[string]any // for -o json, written at the end
	for _, doc := range docs {
		if msgs := o.misplacedRequests(doc); len(msgs) > 0 {
			misplaced++
			for _, msg := range msgs {
				fmt.Fprintf(stderr, "Warning: %s\n", msg)
			}
		}
		obj, err := o.injectDocument(doc, templates, stderr)
		if err != nil {
			failed++
			fmt.Fprintln(stderr, err)
			continue
		}
		if o.output == "json" {
			injected = append(injected, obj)
			continue
		}
		y, err := workload.Encode(obj)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: cannot encode as YAML: %v\n", o.documentName(doc), err)
			continue
		}
		if written > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
		written++
	}
	if o.output == "json" && len(injected) > 0 {
		if err := writeJSON(out, injected); err != nil {
			return fmt.Errorf("writing the output: %w", err)
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d documents could not be injected (left out of the output)", inputs, failed, len(docs))
	}
	if misplaced > 0 && o.strict {
		return fmt.Errorf("%s: %d of %d documents ask for injection where nothing reads the request (--strict)", inputs, misplaced, len(docs))
	}
	return nil
}

// podKinds are the kinds whose pods inject finds (workload.Pods); a List is looked into item by item.
var podKinds = map[string]bool{"Pod": true, "Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true,
	"ReplicationController": true, "Job": true, "CronJob": true, "List": true}

// misplacedRequests says why a document asks for injection (sidecar.dev/inject on its own metadata) where
// nothing reads it, once per object that does: a List's items are looked into, Lists within it too, since
// kubectl applies them as it applies documents. A workload's own annotations never reach its pods: the webhook
// and inject read the pod template's. An unknown kind (an Argo Rollout, a PodTemplate) passes through
// uninjected.
func (o *injectOptions) misplacedRequests(doc fileDoc) []string {
	if doc.Err != nil || doc.Object == nil {
		return nil
	}
	return misplacedIn(doc.Object, o.documentName(doc), "")
}

// misplacedIn is misplacedRequests for one object of document docName; at is its position in the document's
// Lists ("2.1"), named as workload.Pod.Where names a List's pods.
func misplacedIn(obj map[string]any, docName, at string) []string {
	where := docName
	if at != "" {
		where = fmt.Sprintf("%s: item %s (%s)", docName, at, workload.Describe(obj))
	}
	kind, _ := obj["kind"].(string)
	if kind == "List" {
		items, _ := obj["items"].([]any)
		var msgs []string
		for i, it := range items {
			if item, ok := it.(map[string]any); ok {
				msgs = append(msgs, misplacedIn(item, docName, strings.TrimPrefix(fmt.Sprintf("%s.%d", at, i+1), "."))...)
			}
		}
		return msgs
	}
	meta, _ := obj["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	value, asks := annotations[v1alpha1.AnnotationInject]
	switch {
	case !asks || kind == "Pod":
		return nil
	case podKinds[kind]:
		return []string{fmt.Sprintf("%s: %s: %v is on the %s's own metadata, where nothing reads it; move it to the pod template's (spec.template.metadata.annotations%s)",
			where, v1alpha1.AnnotationInject, value, kind, map[bool]string{true: " of spec.jobTemplate.spec"}[kind == "CronJob"])}
	default:
		return []string{fmt.Sprintf("%s: asks for injection (%s: %v) but inject does not know where a %s keeps its pod; passed through uninjected",
			where, v1alpha1.AnnotationInject, value, kind)}
	}
}

// injectDocument injects every pod of one document; the returned error is the message for stderr, naming the
// file, the document and the object.
func (o *injectOptions) injectDocument(doc fileDoc, templates []*inject.Template, stderr io.Writer) (map[string]any, error) {
	docName := o.documentName(doc)
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

func fileDisplayName(file string) string {
	if file == "-" {
		return "<stdin>"
	}
	return file
}

// documentName is `file: document N (Kind "name")`, or `file: document N (starting on line L)` when the document
// could not be decoded.
func (o *injectOptions) documentName(doc fileDoc) string {
	return doc.Name(fileDisplayName(doc.file))
}

// fileDoc is a document and the file it was read from.
type fileDoc struct {
	workload.Document
	file string
}

// expandInputs replaces each directory by its .yaml, .yml and .json files, in name order (not recursively, as
// kubectl apply -f DIR); - (stdin) may be given once.
func expandInputs(inputs []string) ([]string, error) {
	var out []string
	stdin := 0
	for _, in := range inputs {
		if in == "-" {
			if stdin++; stdin > 1 {
				return nil, errors.New("-f - (stdin) can be given only once")
			}
			out = append(out, in)
			continue
		}
		entries, err := os.ReadDir(in)
		if err != nil {
			out = append(out, in) // not a directory: a file, whose reading reports what is wrong with it
			continue
		}
		n := len(out)
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				out = append(out, filepath.Join(in, e.Name()))
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("%s: no .yaml, .yml or .json file in the directory", in)
		}
	}
	return out, nil
}

func readDocuments(file string, stdin io.Reader) ([]workload.Document, error) {
	r, closeFn, err := workload.Open(file, stdin)
	if err != nil {
		return nil, err
	}
	defer closeFn()
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
	read, err := readTemplates(o.templates, o.namespace, "nothing was injected", stdin, stderr)
	if err != nil {
		return nil, err
	}
	out := make([]*inject.Template, 0, len(read))
	for _, rt := range read {
		t := inject.Compile(rt.Object, o.injectorNamespace)
		if t.Err != nil {
			fmt.Fprintf(stderr, "Warning: %s: the template is invalid: %v\n", rt.Where, t.Err)
		}
		out = append(out, t)
	}
	return out, nil
}

// readTemplates reads the SidecarTemplates of filename (- for stdin) through workload.ReadTemplates (strictly, as
// the API server would). Every error is reported on stderr before it fails with consequence in its message.
func readTemplates(filename, namespace, consequence string, stdin io.Reader, stderr io.Writer) ([]workload.Template, error) {
	file := fileDisplayName(filename)
	r, closeFn, err := workload.Open(filename, stdin)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	read, err := workload.ReadTemplates(r, file, namespace)
	if err != nil {
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		return nil, fmt.Errorf("%s: the SidecarTemplates cannot be read (%d errors); %s", file, len(errs), consequence)
	}
	return read, nil
}

// writeJSON writes objs as kubectl does for -o json: one object as itself, several as the items of a v1 List,
// indented, ending in a newline.
func writeJSON(w io.Writer, objs []map[string]any) error {
	var v any = objs[0]
	if len(objs) > 1 {
		v = map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{}, "items": objs}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
