package inject

import (
	"encoding/json"
	"math/rand"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// serviceAccountPlugin does to p what the API server's ServiceAccount admission plugin does to a pod it creates
// (k8s.io/kubernetes v1.37 plugin/pkg/admission/serviceaccount, mountServiceAccountToken), for a
// ServiceAccount that leaves automounting to the pod: every container and init container without a mount at
// the token path gets the pod's first kube-api-access-* volume mounted there, and the volume is created when a
// container needed it. It reports whether it changed the pod. The API server runs it before the webhooks and,
// once a webhook has changed the pod, again after them.
func serviceAccountPlugin(p *corev1.Pod) bool {
	if a := p.Spec.AutomountServiceAccountToken; a != nil && !*a {
		return false
	}
	if _, mirror := p.Annotations[mirrorPodAnnotation]; mirror {
		return false
	}
	volume, has := "kube-api-access-plgn1", false
	if i := slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, tokenVolumePrefix) }); i >= 0 {
		volume, has = p.Spec.Volumes[i].Name, true
	}
	changed := false
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if !slices.ContainsFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == serviceAccountTokenPath }) {
				list[i].VolumeMounts = append(list[i].VolumeMounts, corev1.VolumeMount{Name: volume, ReadOnly: true, MountPath: serviceAccountTokenPath})
				changed = true
			}
		}
	}
	if changed && !has {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: volume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}})
	}
	return changed
}

// tokenMounts returns, per container and init container of p, the name of the volume mounted at the token path
// ("" for none).
func tokenMounts(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		out[c.Name] = ""
		for _, m := range c.VolumeMounts {
			if m.MountPath == serviceAccountTokenPath {
				out[c.Name] = m.Name
			}
		}
	}
	return out
}

// saTemplates adds a sidecar container, a native sidecar and a regular init container; "own-token" mounts a
// volume of its own at the token path.
const saTemplates = `
metadata: {name: mesh, namespace: team-a}
spec:
  containers: [{name: proxy, image: "registry.example/proxy:1", volumeMounts: [{name: certs, mountPath: /certs}]}]
  initContainers:
  - {name: agent, image: "registry.example/agent:1", restartPolicy: Always}
  - {name: setup, image: "registry.example/setup:1", volumeMounts: []}
  volumes: [{name: certs, emptyDir: {}}]
---
metadata: {name: own-token, namespace: team-a}
spec:
  containers: [{name: token-user, image: "registry.example/tu:1", volumeMounts: [{name: my-token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]}]
  volumes: [{name: my-token, emptyDir: {}}]
`

// saPod is a pod as the ServiceAccount plugin leaves it (the token volume, each container mounting it), with the
// spec lines extra added.
func saPod(extra string) string {
	return `
metadata: {name: web, namespace: team-a, annotations: {sidecar.dev/inject: "mesh, own-token"}}
spec:
  containers:
  - {name: app, image: app:1, volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]}
  initContainers:
  - {name: migrate, image: app:1, volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]}
  volumes: [{name: data, emptyDir: {}}, {name: kube-api-access-abcde, projected: {sources: [{serviceAccountToken: {path: token}}]}}]
` + extra
}

func TestTheTemplatesContainersGetTheServiceAccountTokenMountThePluginWouldAdd(t *testing.T) {
	noTokenMount := func(t *testing.T, _ *Result, p *corev1.Pod) {
		for _, c := range []string{"proxy", "agent", "setup"} {
			if v := tokenMounts(p)[c]; v != "" {
				t.Errorf("%s mounts %q at the token path, want nothing added", c, v)
			}
		}
	}
	runTable(t, []tableCase{
		{
			name: "a pod the plugin mounted the token into: every added container and init container gets the same mount, the one that mounts the path itself keeps its own",
			pod:  saPod(""), templates: saTemplates,
			decisions: []want{{"team-a", "mesh", OutcomeInjected, ReasonRequested}, {"team-a", "own-token", OutcomeInjected, ReasonRequested}},
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				want := map[string]string{"app": "kube-api-access-abcde", "migrate": "kube-api-access-abcde", "proxy": "kube-api-access-abcde",
					"agent": "kube-api-access-abcde", "setup": "kube-api-access-abcde", "token-user": "my-token"}
				if got := tokenMounts(p); !apiequality.Semantic.DeepEqual(got, want) {
					t.Errorf("token mounts = %v, want %v", got, want)
				}
				proxy := p.Spec.Containers[slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "proxy" })]
				wantMounts := []corev1.VolumeMount{{Name: "certs", MountPath: "/certs"},
					{Name: "kube-api-access-abcde", ReadOnly: true, MountPath: serviceAccountTokenPath}}
				if !apiequality.Semantic.DeepEqual(proxy.VolumeMounts, wantMounts) {
					t.Errorf("proxy mounts = %+v, want the template's, then the token's (as the plugin appends it)", proxy.VolumeMounts)
				}
				if serviceAccountPlugin(p) {
					t.Errorf("the plugin, run again after the webhook, still changed the pod: the API server would call the webhook twice")
				}
			},
		},
		{
			name: "a pod with automountServiceAccountToken false has no token volume: nothing is mounted",
			pod: `
metadata: {name: web, namespace: team-a, annotations: {sidecar.dev/inject: mesh}}
spec:
  automountServiceAccountToken: false
  containers: [{name: app, image: app:1}]
`, templates: saTemplates, check: noTokenMount,
		},
		{
			name: "a pod with automountServiceAccountToken false that carries a token volume and mounts (copied from a running pod): nothing is mounted",
			pod:  saPod("  automountServiceAccountToken: false\n"), templates: saTemplates, check: noTokenMount,
		},
		{
			name: "a pod without a token volume (offline inject of a manifest): nothing is mounted",
			pod: `
metadata: {name: web, namespace: team-a, annotations: {sidecar.dev/inject: mesh}}
spec:
  containers: [{name: app, image: app:1}]
`, templates: saTemplates, check: noTokenMount,
		},
		{
			name: "a pod with a container that has no mount at the token path (the plugin did not run for it): nothing is mounted",
			pod: `
metadata: {name: web, namespace: team-a, annotations: {sidecar.dev/inject: mesh}}
spec:
  containers:
  - {name: app, image: app:1, volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]}
  - {name: other, image: app:1}
  volumes: [{name: kube-api-access-abcde, projected: {sources: [{serviceAccountToken: {path: token}}]}}]
`, templates: saTemplates, check: noTokenMount,
		},
		{
			name:      "a mirror pod, whose spec the plugin never changes: nothing is mounted",
			pod:       strings.Replace(saPod(""), `annotations: {`, `annotations: {kubernetes.io/config.mirror: abc, `, 1),
			templates: saTemplates, check: noTokenMount,
		},
		{
			name: "a pod whose app container mounts another volume at the token path: the plugin's volume (the first kube-api-access-*) is mounted, as the plugin would",
			pod: `
metadata: {name: web, namespace: team-a, annotations: {sidecar.dev/inject: mesh}}
spec:
  containers:
  - {name: app, image: app:1, volumeMounts: [{name: custom-token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]}
  - {name: worker, image: app:1, volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]}
  volumes: [{name: custom-token, secret: {secretName: t}}, {name: kube-api-access-abcde, projected: {sources: [{serviceAccountToken: {path: token}}]}}]
`, templates: saTemplates,
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				want := map[string]string{"app": "custom-token", "worker": "kube-api-access-abcde", "proxy": "kube-api-access-abcde",
					"agent": "kube-api-access-abcde", "setup": "kube-api-access-abcde"}
				if got := tokenMounts(p); !apiequality.Semantic.DeepEqual(got, want) {
					t.Errorf("token mounts = %v, want %v", got, want)
				}
				if serviceAccountPlugin(p) {
					t.Errorf("the plugin, run again after the webhook, still changed the pod")
				}
			},
		},
	})
}

// TestTheServiceAccountTokenMountIsRecognisedOnTheSecondPass: Guarantee 2 with the mount this engine adds. The
// pod, fed back, verifies as injected (the record check accepts the mount) and gets no patch.
func TestTheServiceAccountTokenMountIsRecognisedOnTheSecondPass(t *testing.T) {
	ts := compileAll(parseTemplates(t, []byte(saTemplates)), injectorNS)
	raw := podJSON(t, saPod(""))
	req := Request{Pod: raw, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts}
	r1, err := Inject(req)
	if err != nil {
		t.Fatal(err)
	}
	req.Pod = verifyPatch(t, raw, r1)
	r2, err := Inject(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Patch) > 0 || r2.Denied {
		t.Errorf("second pass: denied=%v, patch %s", r2.Denied, mustPatchJSON(t, r2))
	}
	for _, d := range r2.Decisions {
		if d.Outcome != OutcomeAlreadyInjected {
			t.Errorf("second pass: %s/%s is %s/%s, want AlreadyInjected (%s)", d.Namespace, d.Name, d.Outcome, d.Reason, d.Message)
		}
	}
}

// TestPropertyThePluginHasNothingLeftToMount runs the structured generator's pods and templates through the API
// server's order: the ServiceAccount plugin, this engine, the plugin again. The second run of the plugin must
// change nothing (else the API server calls the webhook a second time), and a second pass of the engine adds
// nothing.
func TestPropertyThePluginHasNothingLeftToMount(t *testing.T) {
	mounted := 0
	for seed := range 200 {
		c := &choices{rnd: rand.New(rand.NewSource(int64(seed)))}
		templates, podYAML := structuredTemplates(c), structuredPod(c)
		ts := compileAll(parseTemplates(t, []byte(templates)), injectorNS)
		p := decodePod(t, podJSON(t, podYAML))
		if c.yes() {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init", Image: "app:1"})
		}
		serviceAccountPlugin(p)
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		req := Request{Pod: raw, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts,
			Images: ImageTolerance{Mirrors: []string{structuredMirror}}}
		r1, err := Inject(req)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		patched := verifyPatch(t, raw, r1)
		if r1.Denied {
			continue
		}
		after := decodePod(t, patched)
		if len(after.Spec.Containers)+len(after.Spec.InitContainers) > len(p.Spec.Containers)+len(p.Spec.InitContainers) {
			mounted++
		}
		if serviceAccountPlugin(after) {
			t.Errorf("seed %d: the plugin, run again, changed the pod\npod:\n%s\npatch: %s", seed, podYAML, mustPatchJSON(t, r1))
		}
		req.Pod = patched
		r2, err := Inject(req)
		if err != nil {
			t.Fatalf("seed %d: second pass: %v", seed, err)
		}
		if r2.Denied || len(r2.Patch) > 0 {
			t.Errorf("seed %d: second pass: denied=%v (%s), patch %s", seed, r2.Denied, r2.DenyMessage, mustPatchJSON(t, r2))
		}
	}
	if mounted < 50 {
		t.Errorf("only %d of 200 cases added a container: the property was hardly exercised", mounted)
	}
}

func TestWithTokenMountEditsOnlyVolumeMounts(t *testing.T) {
	mount := tokenMount("kube-api-access-x")
	const m = `{"name":"kube-api-access-x","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}`
	for _, c := range []struct{ name, in, want string }{
		{"no volumeMounts: the list is created", `{"name":"a","image":"i"}`, `{"name":"a","image":"i","volumeMounts":[` + m + `]}`},
		{"an empty object", `{}`, `{"volumeMounts":[` + m + `]}`},
		{"mounts: appended last", `{"name":"a","volumeMounts":[{"name":"v","mountPath":"/v"}],"x":1}`, `{"name":"a","volumeMounts":[{"name":"v","mountPath":"/v"},` + m + `],"x":1}`},
		{"an empty list", `{"name":"a","volumeMounts":[]}`, `{"name":"a","volumeMounts":[` + m + `]}`},
		{"a null list", `{"name":"a","volumeMounts":null}`, `{"name":"a","volumeMounts":[` + m + `]}`},
		{"a mount at the token path already: unchanged", `{"volumeMounts":[{"name":"mine","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]}`, ""},
		{"a volumeMounts string inside another field is not the list", `{"args":["volumeMounts"],"env":[{"name":"volumeMounts","value":"x"}]}`, `{"args":["volumeMounts"],"env":[{"name":"volumeMounts","value":"x"}],"volumeMounts":[` + m + `]}`},
		{"not an object: unchanged", `[1]`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changed := withTokenMount(json.RawMessage(c.in), mount)
			if c.want == "" {
				if changed || string(got) != c.in {
					t.Errorf("got %s (changed=%v), want it unchanged", got, changed)
				}
				return
			}
			if !changed || string(got) != c.want {
				t.Errorf("got %s (changed=%v)\nwant %s", got, changed, c.want)
			}
		})
	}
}

// A template's containers carry where the token mount goes, found when they were encoded or rendered: it must
// be what reading them now finds, for the template's own encoding, its job form and every rendering the
// golden and property cases make (a rendering moves the splice: the values change the container's length).
func TestEveryContainerCarriesTheTokenSpliceItsEncodingHas(t *testing.T) {
	checked := 0
	check := func(name, list string, items []item) {
		for _, it := range items {
			checked++
			if it.tok.kind == spliceUnknown {
				t.Errorf("%s: %s %q carries no token splice", name, list, it.key)
			} else if want := tokenSpliceOf(it.raw); it.tok != want {
				t.Errorf("%s: %s %q carries token splice %+v, its encoding has %+v", name, list, it.key, it.tok, want)
			}
		}
	}
	for _, c := range allPropertyCases(t) {
		pod, err := readPod(c.req.Pod)
		if err != nil {
			continue
		}
		pv := valuesOf(pod, c.req.Namespace)
		for _, tmpl := range c.req.Templates {
			if tmpl.Err != nil {
				continue
			}
			for _, in := range []*instance{tmpl.base, tmpl.jobInstance()} {
				check(c.name+"/"+tmpl.Name, "containers", in.containers)
				check(c.name+"/"+tmpl.Name, "initContainers", in.initContainers)
			}
			if in, err := tmpl.instanceFor(pv, nil, DefaultLimits.MaxRenderedBytes); err == nil {
				check(c.name+"/"+tmpl.Name+" rendered", "containers", in.containers)
				check(c.name+"/"+tmpl.Name+" rendered", "initContainers", in.initContainers)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d containers checked", checked)
	}
}
