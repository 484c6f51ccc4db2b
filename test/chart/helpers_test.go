// Package chart tests the Helm chart charts/sidecar-injector: it runs the helm binary (bin/helm, or $HELM) to lint
// and render the chart, decodes every rendered object strictly into its k8s.io/api type and asserts what the
// chart promises, and has a real kube-apiserver (envtest, $KUBEBUILDER_ASSETS or bin/) accept every object.
//
// Without helm (or kube-apiserver and etcd, for the envtest stories) the tests are skipped, unless CI is set, where
// a missing binary fails them (internal/testenv): run `make -f charts.mk helm` (and `make control-plane`).
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const (
	releaseName = "sidecar-injector"
	releaseNS   = "sidecar-injector"
	// fullname is the name of every object of the release named releaseName.
	fullname = "sidecar-injector"
)

// scheme knows every type the chart renders (and SidecarTemplates) except cert-manager's, which stay unstructured.
var scheme = func() *kruntime.Scheme {
	s := kruntime.NewScheme()
	for _, add := range []func(*kruntime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "sidecar-injector") }

// helm runs helm with args and returns stdout and stderr.
func helm(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(testenv.RequireHelm(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// A clean helm home: no user repositories or plugins change the result.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// template renders the chart as release releaseName in releaseNS with extra args (--set ...), failing the test
// when helm fails.
func template(t testing.TB, args ...string) string {
	t.Helper()
	all := append([]string{"template", releaseName, chartDir(t), "--namespace", releaseNS}, args...)
	out, stderr, err := helm(t, all...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(all, " "), err, stderr)
	}
	return out
}

// rendered is one rendering of the chart, decoded.
type rendered struct {
	raw     string
	objects []client.Object // typed objects (k8s.io/api), unstructured for unknown kinds (cert-manager)
}

// render renders and decodes the chart without its `helm test` hook objects (renderWithTests has them); every
// object of a known kind is decoded strictly (an unknown field fails).
func render(t testing.TB, args ...string) *rendered {
	t.Helper()
	return renderWithTests(t, append([]string{"--skip-tests"}, args...)...)
}

// renderWithTests renders and decodes the chart, `helm test` hook objects included.
func renderWithTests(t testing.TB, args ...string) *rendered {
	t.Helper()
	raw := template(t, args...)
	objs, err := decode(raw)
	if err != nil {
		t.Fatalf("decode rendered chart: %v\n%s", err, raw)
	}
	return &rendered{raw: raw, objects: objs}
}

func decode(raw string) ([]client.Object, error) {
	var objs []client.Object
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(raw), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		gvk := u.GroupVersionKind()
		if gvk.Kind == "" {
			return nil, fmt.Errorf("document without kind: %v", m)
		}
		if !scheme.Recognizes(gvk) {
			objs = append(objs, u)
			continue
		}
		typed, err := scheme.New(gvk)
		if err != nil {
			return nil, err
		}
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, typed, true); err != nil {
			return nil, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		typed.GetObjectKind().SetGroupVersionKind(gvk)
		objs = append(objs, typed.(client.Object))
	}
	return objs, nil
}

// all returns the objects of type T.
func all[T client.Object](r *rendered) []T {
	var out []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the only object of type T, failing the test when there is not exactly one.
func one[T client.Object](t testing.TB, r *rendered) T {
	t.Helper()
	objs := all[T](r)
	if len(objs) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, got %d", zero, len(objs))
	}
	return objs[0]
}

// named returns the object of type T called name, failing the test when there is none.
func named[T client.Object](t testing.TB, r *rendered, name string) T {
	t.Helper()
	for _, o := range all[T](r) {
		if o.GetName() == name {
			return o
		}
	}
	var zero T
	t.Fatalf("no %T named %s", zero, name)
	return zero
}

// kinds lists "Kind/name" of every rendered object.
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	return out
}

func (r *rendered) has(kind, name string) bool {
	for _, k := range r.kinds() {
		if k == kind+"/"+name {
			return true
		}
	}
	return false
}
