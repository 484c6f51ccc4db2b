package hardening

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

var tenantsOnce sync.Once

// setupTenants gives alice the admin ClusterRole in team-a and bob the same in team-b, with admin aggregated to
// include sidecartemplates through a ClusterRole labelled rbac.authorization.k8s.io/aggregate-to-admin (as a
// chart or a platform team would ship it). envtest runs no kube-controller-manager, so the test does the
// aggregation controller's job: admin's rules become the union of the ClusterRoles its aggregationRule selects.
func setupTenants(t *testing.T) {
	t.Helper()
	tenantsOnce.Do(func() {
		ctx := ctxFor(t)
		createNamespace(t, "team-a")
		createNamespace(t, "team-b")
		agg := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "sidecar.dev:sidecartemplates:admin", Labels: map[string]string{
				"rbac.authorization.k8s.io/aggregate-to-admin": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"sidecar.dev"}, Resources: []string{"sidecartemplates"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}}},
		}
		if err := k8s.Create(ctx, agg); err != nil {
			t.Fatalf("aggregated ClusterRole: %v", err)
		}
		// view is aggregated into edit, edit into admin: aggregate in that order, as the controller converges.
		for _, name := range []string{"view", "edit", "admin"} {
			var role rbacv1.ClusterRole
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &role); err != nil {
				t.Fatalf("the default %s ClusterRole: %v", name, err)
			}
			if role.AggregationRule == nil {
				t.Fatalf("the %s ClusterRole has no aggregationRule", name)
			}
			var all rbacv1.ClusterRoleList
			if err := k8s.List(ctx, &all); err != nil {
				t.Fatal(err)
			}
			var rules []rbacv1.PolicyRule
			for _, sel := range role.AggregationRule.ClusterRoleSelectors {
				s, err := metav1.LabelSelectorAsSelector(&sel)
				if err != nil {
					t.Fatal(err)
				}
				for _, cr := range all.Items {
					if cr.Name != name && s.Matches(labels.Set(cr.Labels)) {
						rules = append(rules, cr.Rules...)
					}
				}
			}
			role.Rules = rules
			if err := k8s.Update(ctx, &role); err != nil {
				t.Fatalf("aggregate %s: %v", name, err)
			}
		}
		for user, ns := range map[string]string{"alice": "team-a", "bob": "team-b"} {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-admin"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
				Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
			}
			if err := k8s.Create(ctx, rb); err != nil {
				t.Fatalf("RoleBinding %s/%s: %v", ns, rb.Name, err)
			}
		}
	})
}

// as returns a client impersonating user.
func as(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: k8s.RESTMapper()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func template(ns, name string, spec v1alpha1.SidecarTemplateSpec) *v1alpha1.SidecarTemplate {
	return &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sidecar(name string) []corev1.Container {
	return []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}}
}

func newPod(ns, name string, ann, lbl map[string]string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app", Image: "example.com/app:1"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann, Labels: lbl},
		Spec: corev1.PodSpec{Containers: containers}}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// dryRunUntil creates pod as c with dry run until check accepts the outcome (the webhook sees templates through
// its cache): every negative assertion below first waits for a positive one about the same template.
func dryRunUntil(t *testing.T, c client.Client, pod *corev1.Pod, what string, check func(*corev1.Pod, error) error) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, what, func() error {
		p := pod.DeepCopy()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return check(p, c.Create(ctx, p, client.DryRunAll))
	})
}

func injectedInto(container string) func(*corev1.Pod, error) error {
	return func(p *corev1.Pod, err error) error {
		if err != nil {
			return err
		}
		if !slices.Contains(names(p.Spec.Containers), container) {
			return fmt.Errorf("containers %v", names(p.Spec.Containers))
		}
		return nil
	}
}

// TestANamespaceAdminManagesTemplatesInTheirNamespaceOnly: with the admin ClusterRole, alice creates templates
// in team-a, and is forbidden to create them in team-b or in the injector's namespace (cluster-wide templates),
// or to list them across namespaces.
func TestANamespaceAdminManagesTemplatesInTheirNamespaceOnly(t *testing.T) {
	setupTenants(t)
	alice := as(t, "alice")
	ctx := ctxFor(t)
	if err := alice.Create(ctx, template("team-a", "mine", v1alpha1.SidecarTemplateSpec{Containers: sidecar("mine-c")})); err != nil {
		t.Fatalf("alice cannot create a template in her namespace: %v", err)
	}
	for ns, why := range map[string]string{"team-b": "another team's namespace", injectorNS: "the injector's namespace (cluster-wide templates)"} {
		err := alice.Create(ctx, template(ns, "mine", v1alpha1.SidecarTemplateSpec{Containers: sidecar("mine-c")}))
		if !apierrors.IsForbidden(err) {
			t.Errorf("alice creating a template in %s: %v, want Forbidden", why, err)
		}
	}
	if err := alice.List(ctx, &v1alpha1.SidecarTemplateList{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice listing templates in every namespace: %v, want Forbidden", err)
	}
	if err := alice.Delete(ctx, template(injectorNS, probeTemplate, v1alpha1.SidecarTemplateSpec{})); !apierrors.IsForbidden(err) {
		t.Errorf("alice deleting a cluster-wide template: %v, want Forbidden", err)
	}
}

// TestATemplateNeverReachesAnotherNamespacesPods: alice's template in team-a, requested by name or matching by
// selector, is never injected into bob's pods in team-b: the request is denied as not found, the selector
// match does nothing.
func TestATemplateNeverReachesAnotherNamespacesPods(t *testing.T) {
	setupTenants(t)
	alice, bob := as(t, "alice"), as(t, "bob")
	ctx := ctxFor(t)
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "leak"}}
	if err := alice.Create(ctx, template("team-a", "leak", v1alpha1.SidecarTemplateSpec{Selector: sel, Containers: sidecar("leak-c")})); err != nil {
		t.Fatal(err)
	}
	// The webhook knows it: alice's own labelled pod gets it.
	dryRunUntil(t, alice, newPod("team-a", "probe", nil, map[string]string{"app": "leak"}), "team-a pods receive leak", injectedInto("leak-c"))

	requested := newPod("team-b", "requests-leak", map[string]string{v1alpha1.AnnotationInject: "leak"}, nil)
	err := bob.Create(ctx, requested)
	if err == nil {
		t.Fatalf("bob's pod requesting team-a's template was admitted with containers %v", names(requested.Spec.Containers))
	}
	if msg := err.Error(); !strings.Contains(msg, `"leak"`) || !strings.Contains(strings.ToLower(msg), "not found") && !strings.Contains(msg, "NotFound") && !strings.Contains(msg, "does not exist") {
		t.Errorf("denial %q does not say that template leak is not found", msg)
	}
	selected := newPod("team-b", "selected-by-leak", nil, map[string]string{"app": "leak"})
	if err := bob.Create(ctx, selected); err != nil {
		t.Fatalf("bob's plain pod: %v", err)
	}
	if slices.Contains(names(selected.Spec.Containers), "leak-c") || selected.Annotations[v1alpha1.AnnotationStatus] != "" {
		t.Errorf("team-a's selector template reached team-b: containers %v, status %q", names(selected.Spec.Containers), selected.Annotations[v1alpha1.AnnotationStatus])
	}
}

// TestANamespacedTemplateCannotSetHostNamespaces: alice may create a team-a template with hostNetwork (the API
// accepts it) but it is marked invalid (Ready=False) and never injects: a pod requesting it is denied.
func TestANamespacedTemplateCannotSetHostNamespaces(t *testing.T) {
	setupTenants(t)
	alice := as(t, "alice")
	ctx := ctxFor(t)
	yes := true
	st := template("team-a", "hostnet", v1alpha1.SidecarTemplateSpec{HostNetwork: &yes, HostPID: &yes, Containers: sidecar("hostnet-c")})
	if err := alice.Create(ctx, st); err != nil {
		t.Fatalf("the API server refuses the template (the injector should mark it invalid instead): %v", err)
	}
	testenv.Eventually(t, 15*time.Second, "the hostnet template is marked not Ready", func() error {
		var got v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(st), &got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, "Ready")
		if c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("conditions %+v", got.Status.Conditions)
		}
		t.Logf("Ready=False, reason %s: %s", c.Reason, c.Message)
		return nil
	})
	pod := newPod("team-a", "wants-host", map[string]string{v1alpha1.AnnotationInject: "hostnet"}, nil)
	dryRunUntil(t, alice, pod, "a pod requesting the host template is denied because the template is invalid", func(p *corev1.Pod, err error) error {
		if err == nil {
			return fmt.Errorf("admitted: hostNetwork %v, containers %v", p.Spec.HostNetwork, names(p.Spec.Containers))
		}
		if !strings.Contains(err.Error(), "hostnet") || !strings.Contains(err.Error(), "host") || strings.Contains(err.Error(), "not found") {
			return fmt.Errorf("denied, but not as invalid: %v", err)
		}
		return nil
	})
	if err := alice.Create(ctx, pod); err == nil {
		t.Errorf("the pod was admitted: hostNetwork %v", pod.Spec.HostNetwork)
	}
}

// TestAForgedStatusNeitherSkipsNorFakesAnInjection: a pod that arrives with a sidecar.dev/status record claiming
// the template is already there still gets the template, and the record is rewritten.
func TestAForgedStatusNeitherSkipsNorFakesAnInjection(t *testing.T) {
	setupTenants(t)
	alice := as(t, "alice")
	ctx := ctxFor(t)
	if err := alice.Create(ctx, template("team-a", "logs", v1alpha1.SidecarTemplateSpec{Containers: sidecar("logs-c")})); err != nil {
		t.Fatal(err)
	}
	req := map[string]string{v1alpha1.AnnotationInject: "logs"}
	dryRunUntil(t, alice, newPod("team-a", "probe-logs", req, nil), "logs is served", injectedInto("logs-c"))

	// What a genuine record looks like (its hash is what a forger would copy from another pod).
	genuine := newPod("team-a", "genuine", req, nil)
	if err := alice.Create(ctx, genuine); err != nil {
		t.Fatal(err)
	}
	record := genuine.Annotations[v1alpha1.AnnotationStatus]
	if !strings.Contains(record, `"logs"`) {
		t.Fatalf("genuine record %q", record)
	}

	forged := newPod("team-a", "forged", map[string]string{v1alpha1.AnnotationInject: "logs", v1alpha1.AnnotationStatus: record}, nil)
	if err := alice.Create(ctx, forged); err != nil {
		t.Fatalf("a pod with a forged record: %v", err)
	}
	if !slices.Contains(names(forged.Spec.Containers), "logs-c") {
		t.Errorf("the forged record skipped the injection: containers %v", names(forged.Spec.Containers))
	}
	var rec struct {
		Templates []struct{ Namespace, Name string } `json:"templates"`
	}
	if err := json.Unmarshal([]byte(forged.Annotations[v1alpha1.AnnotationStatus]), &rec); err != nil || len(rec.Templates) != 1 || rec.Templates[0].Name != "logs" {
		t.Errorf("record after a forged one: %q (%v)", forged.Annotations[v1alpha1.AnnotationStatus], err)
	}

	// A record claiming a template injected nothing the pod has is corrected too.
	lying := `{"templates":[{"namespace":"team-a","name":"logs","generation":1,"hash":"0000000000000000","containers":["logs-c"]}]}`
	p2 := newPod("team-a", "lying", map[string]string{v1alpha1.AnnotationInject: "logs", v1alpha1.AnnotationStatus: lying}, nil)
	if err := alice.Create(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names(p2.Spec.Containers), "logs-c") || p2.Annotations[v1alpha1.AnnotationStatus] == lying {
		t.Errorf("a lying record: containers %v, record %q", names(p2.Spec.Containers), p2.Annotations[v1alpha1.AnnotationStatus])
	}
}

// TestAPodCannotPassOffItsOwnContainerAsTheSidecar: a pod brings its own container under the sidecar's name
// (another image) and a record copied from a genuinely injected pod. Either the pod is denied (a container name
// conflict) or it ends up with the template's container; never with the fake passed off as the sidecar (with a
// selector template that a platform mandates, that would be a way around it).
func TestAPodCannotPassOffItsOwnContainerAsTheSidecar(t *testing.T) {
	setupTenants(t)
	alice := as(t, "alice")
	ctx := ctxFor(t)
	if err := alice.Create(ctx, template("team-a", "audit", v1alpha1.SidecarTemplateSpec{Containers: sidecar("audit-c")})); err != nil {
		t.Fatal(err)
	}
	req := map[string]string{v1alpha1.AnnotationInject: "audit"}
	dryRunUntil(t, alice, newPod("team-a", "probe-audit", req, nil), "audit is served", injectedInto("audit-c"))
	genuine := newPod("team-a", "genuine-audit", req, nil)
	if err := alice.Create(ctx, genuine); err != nil {
		t.Fatal(err)
	}
	record := genuine.Annotations[v1alpha1.AnnotationStatus]
	fake := corev1.Container{Name: "audit-c", Image: "evil.example/not-the-sidecar:1"}
	p := newPod("team-a", "faked", map[string]string{v1alpha1.AnnotationInject: "audit", v1alpha1.AnnotationStatus: record}, nil,
		corev1.Container{Name: "app", Image: "example.com/app:1"}, fake)
	err := alice.Create(ctx, p)
	if err != nil {
		t.Logf("denied: %v", err)
		return
	}
	for _, c := range p.Spec.Containers {
		if c.Name == "audit-c" && c.Image != "example.com/audit-c:1" {
			t.Errorf("a pod passed off its own container %q (image %s) as template audit's sidecar with a copied record %s", c.Name, c.Image, record)
		}
	}
}
