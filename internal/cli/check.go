package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

type checkOptions struct {
	kubeconfig string
	namespace  string
	template   string
	container  string
	image      string
	timeout    time.Duration
	interval   time.Duration
}

// NewCheckCommand returns the `check` command: it asks the API server to create, in dry run, a pod that
// requests a template, and checks that the answer carries it. The chart's `helm test` runs it; it is also the
// first thing to run when pods seem not to be injected (docs/troubleshooting.md).
func NewCheckCommand() *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check --template NAME [--namespace NS] [--container NAME]",
		Short: "Check that the webhook injects: create a dry-run pod requesting a template and inspect the answer",
		Long: `check creates a pod in --namespace with the API server's dry run (nothing is stored, no Event is
written), requesting --template with the sidecar.dev/inject annotation, and checks that the pod the API server
returns was injected: its sidecar.dev/status record names the template and, with --container, the pod has that
container. It retries until --timeout (the injector may not have seen a new template yet), then exits non-zero
with the last denial or what is missing. It needs permission to create pods in --namespace.`,
		Example: `  sidecar-injector check --namespace team-a --template log-shipper --container log-shipper`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means $KUBECONFIG, then the in-cluster configuration, then ~/.kube/config")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the dry-run pod: one the webhook serves")
	f.StringVar(&o.template, "template", "", "template the pod requests (required)")
	f.StringVar(&o.container, "container", "", "a container the template adds, which the answer must have")
	f.StringVar(&o.image, "image", "registry.k8s.io/pause:3.10", "image of the dry-run pod's container (never pulled)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "how long to retry until the pod comes back injected")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "wait between attempts")
	_ = cmd.MarkFlagRequired("template")
	return cmd
}

func (o *checkOptions) run(ctx context.Context, out io.Writer) error {
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("cannot create a Kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var last error
	for attempt := 1; ; attempt++ {
		err := o.attempt(ctx, c)
		if err == nil {
			_, err = fmt.Fprintf(out, "ok: a pod in namespace %q requesting template %q was injected (attempt %d)\n", o.namespace, o.template, attempt)
			return err
		}
		if last == nil || ctx.Err() == nil { // an attempt cut short by the timeout says less than the one before
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no injected pod after %s (%d attempts): %w", o.timeout, attempt, last)
		case <-time.After(o.interval):
		}
	}
}

// attempt creates the dry-run pod once and says what is wrong with the answer, if anything.
func (o *checkOptions) attempt(ctx context.Context, c client.Client) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "sidecar-injector-check-",
			Namespace:    o.namespace,
			Annotations:  map[string]string{v1alpha1.AnnotationInject: o.template},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: o.image}}},
	}
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		return fmt.Errorf("the API server refused the dry-run pod: %w", err)
	}
	return injectedWith(pod, o.template, o.container)
}

// injectedWith says what pod lacks to count as injected with template (and container, when not empty).
func injectedWith(pod *corev1.Pod, template, container string) error {
	raw, ok := pod.Annotations[v1alpha1.AnnotationStatus]
	if !ok {
		return fmt.Errorf("the pod came back without the %s annotation: the webhook was not called or injected nothing "+
			"(is the namespace excluded, labelled %s=%s, or outside the webhook's namespaceSelector?)",
			v1alpha1.AnnotationStatus, v1alpha1.LabelInjection, v1alpha1.LabelInjectionDisabled)
	}
	var status inject.Status
	if err := json.Unmarshal([]byte(raw), &status); err != nil {
		return fmt.Errorf("the pod's %s annotation is not the webhook's record: %w", v1alpha1.AnnotationStatus, err)
	}
	if !slices.ContainsFunc(status.Templates, func(e inject.StatusEntry) bool { return e.Name == template }) {
		return fmt.Errorf("the pod's %s record does not name template %q: %s", v1alpha1.AnnotationStatus, template, raw)
	}
	if container != "" && !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == container }) {
		names := make([]string, 0, len(pod.Spec.Containers))
		for _, c := range pod.Spec.Containers {
			names = append(names, c.Name)
		}
		return fmt.Errorf("the pod has no container %q (it has %s)", container, strings.Join(names, ", "))
	}
	return nil
}

func (o *checkOptions) restConfig() (*rest.Config, error) {
	if o.kubeconfig != "" {
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, errors.New("cannot find the Kubernetes API server: run in a cluster, or set --kubeconfig or $KUBECONFIG")
	}
	return cfg, nil
}
