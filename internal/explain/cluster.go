package explain

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// ClusterSource reads templates and namespace labels from a cluster, live (this is a CLI: no cache).
type ClusterSource struct {
	Client            client.Reader
	InjectorNamespace string

	templates map[string][]v1alpha1.SidecarTemplate
	revisions map[string][]appsv1.ControllerRevision
	labels    map[string]map[string]string
}

// Templates implements Source: the templates of namespace and of the injector's namespace.
func (c *ClusterSource) Templates(ctx context.Context, namespace string) ([]v1alpha1.SidecarTemplate, error) {
	namespaces := []string{namespace}
	if c.InjectorNamespace != "" && c.InjectorNamespace != namespace {
		namespaces = append(namespaces, c.InjectorNamespace)
	}
	var out []v1alpha1.SidecarTemplate
	for _, ns := range namespaces {
		items, err := c.list(ctx, ns)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

func (c *ClusterSource) list(ctx context.Context, ns string) ([]v1alpha1.SidecarTemplate, error) {
	if items, ok := c.templates[ns]; ok {
		return items, nil
	}
	var list v1alpha1.SidecarTemplateList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list SidecarTemplates in namespace %q: %w", ns, err)
	}
	if c.templates == nil {
		c.templates = map[string][]v1alpha1.SidecarTemplate{}
	}
	c.templates[ns] = list.Items
	return list.Items, nil
}

// Revisions implements RevisionSource: the template's ControllerRevisions (those it owns, by UID).
func (c *ClusterSource) Revisions(ctx context.Context, t *v1alpha1.SidecarTemplate) ([]inject.Revision, error) {
	items, ok := c.revisions[t.Namespace]
	if !ok {
		var list appsv1.ControllerRevisionList
		err := c.Client.List(ctx, &list, client.InNamespace(t.Namespace), client.HasLabels{v1alpha1.LabelTemplateRevision})
		if err != nil && !apierrors.IsForbidden(err) { // forbidden: explain without revisions (the current one)
			return nil, fmt.Errorf("list the revisions of the SidecarTemplates in namespace %q: %w", t.Namespace, err)
		}
		if c.revisions == nil {
			c.revisions = map[string][]appsv1.ControllerRevision{}
		}
		items = list.Items
		c.revisions[t.Namespace] = items
	}
	var out []inject.Revision
	for i := range items {
		cr := &items[i]
		if _, uid, ok := store.RevisionOwner(cr); !ok || uid != t.UID {
			continue
		}
		out = append(out, store.RevisionOf(cr))
	}
	return out, nil
}

// NamespaceLabels implements Source. A namespace that does not exist has no labels to know (nil), as for the
// webhook before its informer saw a new namespace.
func (c *ClusterSource) NamespaceLabels(ctx context.Context, namespace string) (map[string]string, error) {
	if l, ok := c.labels[namespace]; ok {
		return l, nil
	}
	var ns corev1.Namespace
	var l map[string]string
	if err := c.Client.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get namespace %q: %w", namespace, err)
		}
	} else {
		l = ns.Labels
		if l == nil {
			l = map[string]string{}
		}
	}
	if c.labels == nil {
		c.labels = map[string]map[string]string{}
	}
	c.labels[namespace] = l
	return l, nil
}

// NewClient builds a client from a kubeconfig file and context (empty: the file's current context) and returns
// it with the context's namespace ("" when it names none).
func NewClient(kubeconfig, kubeContext string) (client.Client, string, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		loadingRules(kubeconfig),
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", errors.New("no cluster to read templates from: give --templates FILE (offline), --kubeconfig PATH, or set $KUBECONFIG")
	}
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	ns, explicit, err := cc.Namespace()
	if err != nil || !explicit {
		ns = ""
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, "", err
		}
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return cl, ns, nil
}

// loadingRules find the kubeconfig as kubectl does: the explicit path, else $KUBECONFIG (a list of files), else
// ~/.kube/config.
func loadingRules(kubeconfig string) *clientcmd.ClientConfigLoadingRules {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	return rules
}
