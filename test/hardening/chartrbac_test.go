package hardening

import (
	"context"
	"maps"
	"slices"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// renderRBAC renders the chart (default values: selfManaged TLS, leader election) as release sidecar-injector in
// the injector's namespace and returns its RBAC objects.
func renderRBAC(t *testing.T) []client.Object {
	t.Helper()
	kinds := map[string]func() client.Object{
		"ClusterRole":        func() client.Object { return &rbacv1.ClusterRole{} },
		"ClusterRoleBinding": func() client.Object { return &rbacv1.ClusterRoleBinding{} },
		"Role":               func() client.Object { return &rbacv1.Role{} },
		"RoleBinding":        func() client.Object { return &rbacv1.RoleBinding{} },
	}
	docs := renderChart(t, slices.Sorted(maps.Keys(kinds))...)
	var objs []client.Object
	for _, kind := range slices.Sorted(maps.Keys(docs)) {
		for _, doc := range docs[kind] {
			obj := kinds[kind]()
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// TestTheChartServiceAccountCanDoWhatTheInjectorNeedsAndNothingMore creates the chart's rendered RBAC on the
// API server and asks it (SubjectAccessReview) what the injector's ServiceAccount may do.
func TestTheChartServiceAccountCanDoWhatTheInjectorNeedsAndNothingMore(t *testing.T) {
	objs := renderRBAC(t)
	if len(objs) < 4 {
		t.Fatalf("the chart renders %d RBAC objects, want at least a ClusterRole, a ClusterRoleBinding, Roles and RoleBindings", len(objs))
	}
	ctx := ctxFor(t)
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	const sa = "system:serviceaccount:" + injectorNS + ":sidecar-injector"
	type access struct {
		verb, group, resource, sub, ns, name string
	}
	can := func(a access) (bool, string) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + injectorNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Namespace: a.ns, Name: a.name},
		}}
		if err := k8s.Create(ctx, sar); err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		return sar.Status.Allowed, sar.Status.Reason
	}
	str := func(a access) string {
		r := a.resource
		if a.group != "" {
			r += "." + a.group
		}
		if a.sub != "" {
			r += "/" + a.sub
		}
		s := a.verb + " " + r
		if a.name != "" {
			s += " " + a.name
		}
		if a.ns != "" {
			s += " in " + a.ns
		}
		return s
	}
	needed := []access{
		{"list", "sidecar.dev", "sidecartemplates", "", "", ""},
		{"watch", "sidecar.dev", "sidecartemplates", "", "", ""},
		{"get", "sidecar.dev", "sidecartemplates", "", "team-x", "t"},
		{"update", "sidecar.dev", "sidecartemplates", "status", "team-x", "t"},
		{"patch", "sidecar.dev", "sidecartemplates", "status", "team-x", "t"},
		{"list", "", "namespaces", "", "", ""},
		{"watch", "", "namespaces", "", "", ""},
		{"list", "", "pods", "", "", ""},
		{"watch", "", "pods", "", "", ""},
		{"create", "", "events", "", "team-x", ""},
		{"patch", "", "events", "", "team-x", ""},
		{"create", "events.k8s.io", "events", "", "team-x", ""},
		{"get", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "sidecar-injector"},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "sidecar-injector"},
		{"list", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", ""},
		{"watch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", ""},
		{"get", "", "secrets", "", injectorNS, "sidecar-injector-tls"},
		{"update", "", "secrets", "", injectorNS, "sidecar-injector-tls"},
		{"list", "", "secrets", "", injectorNS, ""},
		{"watch", "", "secrets", "", injectorNS, ""},
		{"get", "coordination.k8s.io", "leases", "", injectorNS, "sidecar-injector.sidecar.dev"},
		{"update", "coordination.k8s.io", "leases", "", injectorNS, "sidecar-injector.sidecar.dev"},
		{"create", "coordination.k8s.io", "leases", "", injectorNS, ""},
		// The rolling restart (rollingRestart.enabled, on by default): patch, to write the restart annotation.
		{"patch", "apps", "deployments", "", "team-x", "web"},
		{"patch", "apps", "statefulsets", "", "team-x", "db"},
		{"patch", "apps", "daemonsets", "", "team-x", "agent"},
	}
	dangerous := []access{
		{"get", "", "secrets", "", "team-x", "db-password"},
		{"list", "", "secrets", "", "team-x", ""},
		{"list", "", "secrets", "", "", ""},
		{"get", "", "secrets", "", injectorNS, "someone-elses"},
		{"update", "", "secrets", "", injectorNS, "someone-elses"},
		{"create", "", "secrets", "", injectorNS, ""},
		{"delete", "", "secrets", "", injectorNS, "sidecar-injector-tls"},
		{"create", "", "pods", "", "team-x", ""},
		{"delete", "", "pods", "", "team-x", "p"},
		{"update", "", "pods", "", "team-x", "p"},
		{"patch", "", "pods", "", "team-x", "p"},
		{"create", "", "pods", "exec", "team-x", "p"},
		{"create", "", "pods", "eviction", "team-x", "p"},
		{"create", "", "serviceaccounts", "token", "team-x", "default"},
		{"get", "", "configmaps", "", "team-x", "c"},
		{"update", "", "namespaces", "", "", "team-x"},
		{"create", "apps", "deployments", "", "team-x", ""},
		// The rolling restart patches workloads and nothing more: it never reads, lists, replaces, scales or
		// deletes them, and never touches ReplicaSets, Jobs or CronJobs.
		{"get", "apps", "deployments", "", "team-x", "web"},
		{"list", "apps", "deployments", "", "", ""},
		{"watch", "apps", "statefulsets", "", "", ""},
		{"update", "apps", "deployments", "", "team-x", "web"},
		{"delete", "apps", "daemonsets", "", "team-x", "agent"},
		{"patch", "apps", "deployments", "scale", "team-x", "web"},
		{"update", "apps", "statefulsets", "scale", "team-x", "db"},
		{"patch", "apps", "replicasets", "", "team-x", "web-abc"},
		{"patch", "batch", "jobs", "", "team-x", "j"},
		{"patch", "batch", "cronjobs", "", "team-x", "c"},
		{"create", "sidecar.dev", "sidecartemplates", "", "team-x", ""},
		{"update", "sidecar.dev", "sidecartemplates", "", "team-x", "t"},
		{"delete", "sidecar.dev", "sidecartemplates", "", "team-x", "t"},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "someone-elses"},
		{"patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "someone-elses"},
		{"delete", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "sidecar-injector"},
		{"create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", ""},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "someone-elses"},
		{"update", "coordination.k8s.io", "leases", "", injectorNS, "someone-elses"},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"},
		{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", ""},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", "sidecar-injector"},
		{"bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "cluster-admin"},
		{"impersonate", "", "users", "", "", "admin"},
		{"get", "", "nodes", "proxy", "", "n"},
		{"update", "apiextensions.k8s.io", "customresourcedefinitions", "", "", "sidecartemplates.sidecar.dev"},
	}
	for _, a := range needed {
		if ok, reason := can(a); !ok {
			t.Errorf("the injector cannot %s, which it needs (%s)", str(a), reason)
		}
	}
	for _, a := range dangerous {
		if ok, reason := can(a); ok {
			t.Errorf("the injector can %s: %s", str(a), reason)
		}
	}
	t.Logf("%d needed permissions allowed, %d dangerous ones denied", len(needed), len(dangerous))
}
