package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func sel(t *testing.T, s string) *metav1.LabelSelector {
	t.Helper()
	ls, err := metav1.ParseToLabelSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestCouldOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", "app=web", true}, // empty selector: every pod
		{"app=web", "app=web", true},
		{"app=web", "app=api", false},
		{"app=web", "tier=front", true},
		{"app=web", "app", true},
		{"app=web", "!app", false},
		{"app in (web,api)", "app in (api,db)", true},
		{"app in (web,api)", "app in (db)", false},
		{"app in (web,api)", "app notin (web,api)", false},
		{"app in (web,api)", "app notin (web)", true},
		{"app notin (web)", "app notin (api)", true},
		{"!app", "app notin (web)", true},
		{"app=web,tier=front", "app=web,tier=back", false},
	} {
		a, err := metav1.LabelSelectorAsSelector(sel(t, tc.a))
		if err != nil {
			t.Fatal(err)
		}
		b, err := metav1.LabelSelectorAsSelector(sel(t, tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if got := CouldOverlap(a, b); got != tc.want {
			t.Errorf("CouldOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := CouldOverlap(b, a); got != tc.want {
			t.Errorf("CouldOverlap(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

const injectorNS = "sidecar-injector"

type tmpl struct {
	ns, name, selector string
	order              int32
	containers         []string
	initContainers     []string
	volumes            []string
	nsSelector         string
	hostNetwork        bool
	override           v1alpha1.NamespaceOverride
}

func (x tmpl) build(t *testing.T) v1alpha1.SidecarTemplate {
	st := v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: x.ns, Name: x.name}}
	if x.selector != "-" {
		st.Spec.Selector = sel(t, x.selector)
	}
	if x.nsSelector != "" {
		st.Spec.NamespaceSelector = sel(t, x.nsSelector)
	}
	st.Spec.Order = x.order
	for _, c := range x.containers {
		st.Spec.Containers = append(st.Spec.Containers, corev1.Container{Name: c, Image: "img"})
	}
	for _, c := range x.initContainers {
		st.Spec.InitContainers = append(st.Spec.InitContainers, corev1.Container{Name: c, Image: "img"})
	}
	for _, v := range x.volumes {
		st.Spec.Volumes = append(st.Spec.Volumes, corev1.Volume{Name: v})
	}
	if x.hostNetwork {
		st.Spec.HostNetwork = ptr.To(true)
	}
	st.Spec.NamespaceOverride = x.override
	return st
}

func TestClashes(t *testing.T) {
	type want struct {
		name     string   // ns/name of the template checked
		contains []string // each must appear in one message; none means no clash
	}
	for _, tc := range []struct {
		name      string
		templates []tmpl
		nsLabels  map[string]string
		checks    []want
	}{
		{
			name: "same namespace, overlapping selectors: reported on the later one only",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "app=web", containers: []string{"proxy"}, volumes: []string{"data"}},
				{ns: "team-a", name: "b", selector: "tier=front", containers: []string{"proxy"}, volumes: []string{"data"}},
			},
			checks: []want{
				{"team-a/a", nil},
				{"team-a/b", []string{`container name "proxy" clashes with template team-a/a`, `volume name "data" clashes with template team-a/a`}},
			},
		},
		{
			name: "order decides which one is later",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "", order: 10, containers: []string{"proxy"}},
				{ns: "team-a", name: "b", selector: "app=web", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/a", []string{"team-a/b"}}, {"team-a/b", nil}},
		},
		{
			name: "an init container and a container share the name space",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "", initContainers: []string{"agent"}},
				{ns: "team-a", name: "b", selector: "", containers: []string{"agent"}},
			},
			checks: []want{{"team-a/b", []string{`container name "agent" clashes with template team-a/a`}}},
		},
		{
			name: "disjoint selectors, different names, or a request-only template: no clash",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "app=web", containers: []string{"proxy"}},
				{ns: "team-a", name: "b", selector: "app=api", containers: []string{"proxy"}},
				{ns: "team-a", name: "c", selector: "", containers: []string{"other"}},
				{ns: "team-a", name: "d", selector: "-", containers: []string{"proxy"}},
				{ns: "team-a", name: "e", selector: "-", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/a", nil}, {"team-a/b", nil}, {"team-a/c", nil}, {"team-a/d", nil}, {"team-a/e", nil}},
		},
		{
			name: "other namespaces never meet",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "", containers: []string{"proxy"}},
				{ns: "team-b", name: "b", selector: "", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/a", nil}, {"team-b/b", nil}},
		},
		{
			name: "namespaced vs cluster-wide: reported on the namespaced template, whichever comes first",
			templates: []tmpl{
				{ns: injectorNS, name: "mesh", selector: "", order: 100, containers: []string{"proxy"}},
				{ns: "team-a", name: "mine", selector: "app=web", containers: []string{"proxy"}},
			},
			checks: []want{
				{"team-a/mine", []string{`clashes with cluster-wide template sidecar-injector/mesh`}},
				{injectorNS + "/mesh", nil},
			},
		},
		{
			name: "a cluster-wide template that a namespaced one replaces (namespaceOverride: Allow) is not a candidate",
			templates: []tmpl{
				{ns: injectorNS, name: "mesh", selector: "", containers: []string{"proxy"}, override: v1alpha1.NamespaceOverrideAllow},
				{ns: "team-a", name: "mesh", selector: "-", containers: []string{"other"}},
				{ns: "team-a", name: "mine", selector: "", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/mine", nil}},
		},
		{
			name: "a cluster-wide template that does not let a namespaced one replace it (Deny) stays a candidate",
			templates: []tmpl{
				{ns: injectorNS, name: "mesh", selector: "", containers: []string{"proxy"}},
				{ns: "team-a", name: "mesh", selector: "-", containers: []string{"other"}},
				{ns: "team-a", name: "mine", selector: "", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/mine", []string{"sidecar-injector/mesh"}}},
		},
		{
			name:     "namespaceSelector of the cluster-wide template decides",
			nsLabels: map[string]string{"env": "dev"},
			templates: []tmpl{
				{ns: injectorNS, name: "prod-only", selector: "", nsSelector: "env=prod", containers: []string{"proxy"}},
				{ns: injectorNS, name: "dev-too", selector: "", nsSelector: "env in (dev,prod)", volumes: []string{"data"}},
				{ns: "team-a", name: "mine", selector: "", containers: []string{"proxy"}, volumes: []string{"data"}},
			},
			checks: []want{{"team-a/mine", []string{`volume name "data" clashes with cluster-wide template sidecar-injector/dev-too`}}},
		},
		{
			name: "an invalid template is never injected, so it clashes with nothing",
			templates: []tmpl{
				{ns: "team-a", name: "a", selector: "", containers: []string{"proxy"}, hostNetwork: true},
				{ns: "team-a", name: "b", selector: "", containers: []string{"proxy"}},
			},
			checks: []want{{"team-a/b", nil}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var all []*inject.Template
			for _, x := range tc.templates {
				st := x.build(t)
				all = append(all, inject.Compile(&st, injectorNS))
			}
			for _, c := range tc.checks {
				var self *inject.Template
				for _, ct := range all {
					if ct.Key() == c.name {
						self = ct
					}
				}
				// Everything is passed, other namespaces too: the engine's rule (Index.Offered) leaves them out.
				got := Clashes(self, offeredWith(self, all, injectorNS, tc.nsLabels))
				if len(got) != len(c.contains) {
					t.Fatalf("%s: %d clashes, want %d: %q", c.name, len(got), len(c.contains), got)
				}
				for i, s := range c.contains {
					if !strings.Contains(got[i], s) {
						t.Errorf("%s: clash %d = %q, want it to contain %q", c.name, i, got[i], s)
					}
				}
			}
		})
	}
}

func TestReadyMessageNamesRequiredParameters(t *testing.T) {
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Name: "log-shipper"}}
	if got := ReadyMessage(st); got != "the template can be injected" {
		t.Errorf("no parameters: %q", got)
	}
	st.Spec.Parameters = []v1alpha1.TemplateParameter{{Name: "level", Default: ptr.To("info")}, {Name: "sink"}}
	want := `the template can be injected; pods that receive it must set parameter "sink" (annotation log-shipper.param.sidecar.dev/sink)`
	if got := ReadyMessage(st); got != want {
		t.Errorf("ReadyMessage = %q, want %q", got, want)
	}
}
