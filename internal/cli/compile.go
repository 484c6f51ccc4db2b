package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/policy"
)

type compileOptions struct {
	filename          string
	namespace         string
	injectorNamespace string
	name              string
	partial           bool
}

// NewCompileCommand returns the `compile` command: SidecarTemplates to admission policies, offline.
func NewCompileCommand() *cobra.Command {
	o := &compileOptions{}
	cmd := &cobra.Command{
		Use:   "compile -f FILE|-",
		Short: "Print the MutatingAdmissionPolicies that serve the given templates without a webhook",
		Long: `Compile SidecarTemplates read from a file (or stdin with -f -) into the admission policies that let the
API server inject them itself, without the webhook, and print them as YAML on stdout: one
MutatingAdmissionPolicy with a mutation per template in injection order, its binding, and the
ValidatingAdmissionPolicies (with bindings) that deny (failurePolicy Fail) or warn (Ignore) when a template
a pod wants cannot be applied, and deny requests for names no template serves.

Apply the output and run no injector for these templates. The templates are the whole set: a pod that names
a template not in the file is denied. Templates in --injector-namespace are cluster-wide.

A template that a policy cannot serve exactly (envFrom, hostAliases, dnsConfig, an invalid template, ...) is
reported on stderr with every reason; the command then fails unless --allow-partial is set, and the output
serves the others.`,
		Example:      `  sidecar-injector compile -f sidecars.yaml --injector-namespace sidecar-injector | kubectl apply -f -`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.filename, "filename", "f", "", "file with the SidecarTemplates, or - for stdin (required)")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the templates that do not set metadata.namespace")
	f.StringVar(&o.injectorNamespace, "injector-namespace", "sidecar-injector",
		"the namespace whose templates are cluster-wide and whose pods are never injected")
	f.StringVar(&o.name, "name", "sidecar-injector", "name of the generated policies (the validating ones get -deny and -warn)")
	f.BoolVar(&o.partial, "allow-partial", false, "succeed when some templates cannot be compiled (they are left out)")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

func (o *compileOptions) run(stdin io.Reader, stdout, stderr io.Writer) error {
	read, err := readTemplates(o.filename, o.namespace, "nothing was compiled", stdin, stderr)
	if err != nil {
		return err
	}
	templates := make([]*v1alpha1.SidecarTemplate, len(read))
	for i, r := range read {
		templates[i] = r.Object
	}
	res, err := policy.Compile(templates, policy.Options{
		InjectorNamespace: o.injectorNamespace, Name: o.name, RejectUnknownNames: true,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "sidecar-injector-compile"},
	})
	if err != nil {
		return err
	}
	for i, obj := range res.Objects() {
		js, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(stdout, "---")
		}
		if _, err := stdout.Write(js); err != nil {
			return err
		}
	}
	if len(res.NotCompilable) == 0 {
		return nil
	}
	keys := make([]policy.Key, 0, len(res.NotCompilable))
	for k := range res.NotCompilable {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b policy.Key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		for _, u := range res.NotCompilable[k] {
			fmt.Fprintf(stderr, "SidecarTemplate %s cannot be served by a policy (%s): %s\n", k, u.Reason, u.Message)
		}
	}
	if o.partial {
		return nil
	}
	return fmt.Errorf("%d of %d templates cannot be served by a policy; keep them on the webhook, or pass --allow-partial to compile the others",
		len(res.NotCompilable), len(templates))
}
