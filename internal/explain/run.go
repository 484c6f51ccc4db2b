package explain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

// DefaultInjectorNamespace is the injector's namespace when --injector-namespace is not given: the namespace
// the manifests in config/ install it in.
const DefaultInjectorNamespace = "sidecar-injector"

// Config is what `sidecar-injector explain` is asked to do.
type Config struct {
	// File holds the pods; "-" is stdin.
	File string
	// TemplatesFile (offline) or Kubeconfig (against a cluster, with Context): exactly one.
	TemplatesFile string
	Kubeconfig    string
	Context       string
	// Namespace of pods and templates that name none; empty means the kubeconfig context's namespace against a
	// cluster, else "default".
	Namespace string
	// InjectorNamespace holds the cluster-wide templates; empty means DefaultInjectorNamespace.
	InjectorNamespace string
	// NamespaceLabels are the labels of the pods' namespace, "k=v,k2=v2". Offline, absent means none. Against a
	// cluster, when NamespaceLabelsSet (the flag was given, even empty), they replace the namespace's real
	// labels, to ask "what if".
	NamespaceLabels    string
	NamespaceLabelsSet bool
	// Output is "text" (default) or "json".
	Output string
	// ExitCode makes Run return ErrDenied, after the report, when a pod would be denied (CI gates).
	ExitCode bool

	// client replaces the one built from Kubeconfig (tests).
	client client.Reader
}

// Run reads the pods and templates, explains and writes the report.
func Run(ctx context.Context, cfg Config, stdin io.Reader, stdout io.Writer) error {
	switch cfg.Output {
	case "", "text", "json":
	default:
		return fmt.Errorf("--output must be text or json, not %q", cfg.Output)
	}
	if cfg.File == "" {
		return errors.New("-f FILE (or - for stdin) is required")
	}
	// Without --templates the templates come from a cluster, found as kubectl finds it: --kubeconfig, else
	// $KUBECONFIG, else ~/.kube/config.
	cluster := cfg.TemplatesFile == ""
	if !cluster && (cfg.Kubeconfig != "" || cfg.client != nil) {
		return errors.New("give either --templates FILE (offline) or a cluster (--kubeconfig PATH, $KUBECONFIG or ~/.kube/config), not both")
	}
	if cfg.TemplatesFile == "-" && cfg.File == "-" {
		return errors.New("-f and --templates cannot both read stdin")
	}
	injectorNS := cfg.InjectorNamespace
	if injectorNS == "" {
		injectorNS = DefaultInjectorNamespace
	}
	var nsLabels map[string]string
	if cfg.NamespaceLabels != "" {
		set, err := labels.ConvertSelectorToLabelsMap(cfg.NamespaceLabels)
		if err != nil {
			return fmt.Errorf("--namespace-labels %q: want k=v,k2=v2: %w", cfg.NamespaceLabels, err)
		}
		nsLabels = set
	}

	var src Source
	namespace := cfg.Namespace
	if cluster {
		cl := cfg.client
		if cl == nil {
			c, ctxNamespace, err := NewClient(cfg.Kubeconfig, cfg.Context)
			if err != nil {
				return err
			}
			cl = c
			if namespace == "" {
				namespace = ctxNamespace
			}
		}
		src = &ClusterSource{Client: cl, InjectorNamespace: injectorNS}
		if cfg.NamespaceLabelsSet {
			if nsLabels == nil {
				nsLabels = map[string]string{}
			}
			src = &labelsOverride{Source: src, labels: nsLabels}
		}
	} else {
		r, closeFn, err := workload.Open(cfg.TemplatesFile, stdin)
		if err != nil {
			return err
		}
		defer closeFn()
		items, err := ReadTemplates(r, cfg.TemplatesFile, orDefault(namespace))
		if err != nil {
			return err
		}
		if nsLabels == nil {
			nsLabels = map[string]string{}
		}
		src = &StaticSource{Items: items, Labels: nsLabels}
	}

	r, closeFn, err := workload.Open(cfg.File, stdin)
	if err != nil {
		return err
	}
	defer closeFn()
	pods, err := ReadPods(r, displayName(cfg.File), cfg.Namespace, orDefault(namespace))
	if err != nil {
		return err
	}
	rep, err := Explain(ctx, pods, src, injectorNS)
	if err != nil {
		return err
	}
	if cfg.Output == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err == nil && cfg.ExitCode {
		err = deniedError(rep)
	}
	return err
}

// ErrDenied is returned (wrapped) with ExitCode when a pod would be denied.
var ErrDenied = errors.New("denied")

func deniedError(rep *Report) error {
	var denied []string
	for _, p := range rep.Pods {
		if p.Denied {
			denied = append(denied, p.Source)
		}
	}
	if len(denied) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d pods would be %w (--exit-code): %s", len(denied), len(rep.Pods), ErrDenied, strings.Join(denied, ", "))
}

type labelsOverride struct {
	Source
	labels map[string]string
}

func (l *labelsOverride) NamespaceLabels(context.Context, string) (map[string]string, error) {
	return l.labels, nil
}

func orDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

func displayName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}
