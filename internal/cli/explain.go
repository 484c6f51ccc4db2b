package cli

import (
	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar-injector/internal/explain"
)

// NewExplainCommand returns the `explain` command: for pods read from a file, what the webhook would do with
// them and why, for every candidate template, with templates read from a file or from a cluster.
func NewExplainCommand() *cobra.Command {
	var cfg explain.Config
	cmd := &cobra.Command{
		Use:   "explain -f FILE|- [--templates FILE | --kubeconfig PATH] [--context NAME] [--exit-code]",
		Short: "Explain which templates a pod would receive, and why not",
		Long: `explain runs the webhook's injection engine on the pods in FILE and prints, for every candidate
template, whether it applies and why not (outcome, reason, message), the containers, init containers and
volumes it would add, the admission warnings, the denial if any, and the exact JSON patch.

Templates come from a file (--templates, offline; templates without a namespace take --namespace) or, without
--templates, from a cluster found as kubectl finds it (--kubeconfig, else $KUBECONFIG, else ~/.kube/config): the
SidecarTemplates of the pod's namespace and of the injector's namespace, and the namespace's labels, read live.
With --exit-code the command fails after the report when a pod would be denied. FILE holds Pods and workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob, List; YAML, multi-document, or JSON), read as the inject command reads
them; for a workload, the pod is its pod template and the patch is the one the webhook would send for it.`,
		Example: `  sidecar-injector explain -f pod.yaml --templates templates.yaml --namespace team-a
  kubectl get pod web -o yaml | sidecar-injector explain -f - --kubeconfig ~/.kube/config -o json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.NamespaceLabelsSet = cmd.Flags().Changed("namespace-labels")
			return explain.Run(cmd.Context(), cfg, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.File, "filename", "f", "", "file holding the pods, - for stdin (required)")
	f.StringVar(&cfg.TemplatesFile, "templates", "", "file holding SidecarTemplates (offline)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to read templates and namespace labels from")
	f.StringVar(&cfg.Context, "context", "", "kubeconfig context (default: the current context)")
	f.StringVarP(&cfg.Namespace, "namespace", "n", "", `namespace of pods and templates that name none (default: the context's namespace against a cluster, else "default")`)
	f.StringVar(&cfg.InjectorNamespace, "injector-namespace", explain.DefaultInjectorNamespace, "the injector's namespace, whose templates are cluster-wide")
	f.StringVar(&cfg.NamespaceLabels, "namespace-labels", "", "labels of the pods' namespace, k=v,k2=v2 (against a cluster: replace the real ones)")
	f.StringVarP(&cfg.Output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("filename")
	f.BoolVar(&cfg.ExitCode, "exit-code", false, "exit non-zero when a pod would be denied (for CI gates), after printing the report")
	cmd.MarkFlagsMutuallyExclusive("templates", "kubeconfig")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("templates", "yaml", "yml", "json")
	return cmd
}
