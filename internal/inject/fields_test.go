package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// podWith is a team-a pod requesting the template "t" with the given spec body (YAML, indented two spaces).
func podWith(spec string) string {
	return `
metadata:
  name: web
  namespace: team-a
  annotations: {sidecar.dev/inject: t}
spec:
` + spec
}

// one is a single template "t" in team-a with the given spec body (YAML, indented two spaces).
func one(spec string) string {
	return "metadata: {name: t, namespace: team-a, generation: 1}\nspec:\n" + spec
}

func TestWhatATemplateAdds(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "containers are appended after the pod's own",
			pod:       podWith("  containers: [{name: app, image: a}, {name: b, image: b}]"),
			templates: one("  containers: [{name: s1, image: s}, {name: s2, image: s}]"),
			decisions: []want{{"team-a", "t", I, ReasonRequested}},
			check:     expectContainers("app", "b", "s1", "s2"),
		},
		{
			name:      "containerPlacement First puts them before the pod's own, in template order",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  containerPlacement: First\n  containers: [{name: s1, image: s}, {name: s2, image: s}]"),
			check:     expectContainers("s1", "s2", "app"),
		},
		{
			name:      "containerPlacement First with mounts: the application container still gets them after being shifted",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  containerPlacement: First\n  containers: [{name: s1, image: s}]\n  volumeMounts: [{name: v, mountPath: /v}]\n  volumes: [{name: v, emptyDir: {}}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				expectContainers("s1", "app")(t, nil, p)
				if _, ok := mountAt(container(t, p, "app"), "/v"); !ok {
					t.Errorf("app has no mount /v")
				}
				if len(container(t, p, "s1").VolumeMounts) != 0 {
					t.Errorf("the sidecar got the application mounts")
				}
			},
		},
		{
			name:      "a native sidecar goes before the pod's own init containers",
			pod:       podWith("  initContainers: [{name: i1, image: i}, {name: i2, image: i}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: native, image: n, restartPolicy: Always}]"),
			check:     expectInitContainers("native", "i1", "i2"),
		},
		{
			name:      "a regular init container goes after the pod's own",
			pod:       podWith("  initContainers: [{name: i1, image: i}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: regular, image: r}]"),
			check:     expectInitContainers("i1", "regular"),
		},
		{
			name:      "initContainerPlacement First puts every init container before the pod's own",
			pod:       podWith("  initContainers: [{name: i1, image: i}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainerPlacement: First\n  initContainers: [{name: regular, image: r}, {name: native, image: n, restartPolicy: Always}]"),
			check:     expectInitContainers("regular", "native", "i1"),
		},
		{
			name:      "initContainerPlacement Last puts every init container after the pod's own, native sidecars included",
			pod:       podWith("  initContainers: [{name: i1, image: i}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainerPlacement: Last\n  initContainers: [{name: native, image: n, restartPolicy: Always}, {name: regular, image: r}]"),
			check:     expectInitContainers("i1", "native", "regular"),
		},
		{
			name:      "init containers are added to a pod that has none (absent array created whole), in the author's order",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: regular, image: r}, {name: native, image: n, restartPolicy: Always}]"),
			check:     expectInitContainers("regular", "native"),
		},
		{
			name:      "under Auto, init containers up to the template's last native sidecar go before the pod's own, the rest after",
			pod:       podWith("  initContainers: [{name: migrate, image: m}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: mesh-init, image: i}, {name: envoy, image: e, restartPolicy: Always}, {name: warm, image: w}]"),
			check:     expectInitContainers("mesh-init", "envoy", "migrate", "warm"),
		},
		{
			name:       "a pod that runs to completion gets the containers as native sidecars after the template's own leading init containers",
			pod:        podWith("  restartPolicy: Never\n  initContainers: [{name: migrate, image: m}]\n  containers: [{name: app, image: a}]"),
			templates:  one("  containers: [{name: shipper, image: s}]\n  initContainers: [{name: mesh-init, image: i}, {name: envoy, image: e, restartPolicy: Always}]"),
			noWarnings: true,
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				expectInitContainers("mesh-init", "envoy", "shipper", "migrate")(t, nil, p)
				expectContainers("app")(t, nil, p)
				for _, c := range p.Spec.InitContainers {
					if c.Name == "shipper" && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
						t.Errorf("shipper has restartPolicy %v, want Always (a native sidecar)", c.RestartPolicy)
					}
				}
			},
		},
		{
			name:       "targetContainers may name the pod's own init container: it gets env and mounts, without a warning",
			pod:        podWith("  initContainers: [{name: migrate, image: m}, {name: seed, image: s}]\n  containers: [{name: app, image: a}]"),
			templates:  one("  targetContainers: [migrate, app]\n  env: [{name: DB_PASSWORD_FILE, value: /vault/secrets/db}]\n  volumes: [{name: secrets, emptyDir: {}}]\n  volumeMounts: [{name: secrets, mountPath: /vault/secrets}]"),
			noWarnings: true,
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				for _, c := range p.Spec.InitContainers {
					_, mounted := mountAt(c, "/vault/secrets")
					if named := c.Name == "migrate"; mounted != named || (len(c.Env) == 1) != named {
						t.Errorf("init container %s: mounted %t, env %v; only migrate, which targetContainers names, gets them", c.Name, mounted, c.Env)
					}
				}
				if _, ok := mountAt(container(t, p, "app"), "/vault/secrets"); !ok {
					t.Errorf("app, also named, has no mount")
				}
			},
		},
		{
			name:      "without targetContainers the pod's init containers get nothing",
			pod:       podWith("  initContainers: [{name: migrate, image: m}]\n  containers: [{name: app, image: a}]"),
			templates: one("  env: [{name: X, value: x}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if e := p.Spec.InitContainers[0].Env; len(e) != 0 {
					t.Errorf("migrate got env %v", e)
				}
				if e := container(t, p, "app").Env; len(e) != 1 {
					t.Errorf("app got env %v, want X", e)
				}
			},
		},
		{
			name:      "an init container named in targetContainers keeps its index while the template's native sidecar goes in front",
			pod:       podWith("  initContainers: [{name: migrate, image: m, env: [{name: A, value: a}]}]\n  containers: [{name: app, image: a}]"),
			templates: one("  targetContainers: [migrate]\n  initContainers: [{name: agent, image: g, restartPolicy: Always}]\n  env: [{name: X, value: x}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				expectInitContainers("agent", "migrate")(t, nil, p)
				if e := p.Spec.InitContainers[1].Env; len(e) != 2 || e[1].Name != "X" {
					t.Errorf("migrate env %v, want A then X", e)
				}
				if e := p.Spec.InitContainers[0].Env; len(e) != 0 {
					t.Errorf("the template's own agent got env %v", e)
				}
			},
		},
		{
			name:      "jobPolicy Keep adds regular containers to an OnFailure pod and warns that it will not complete",
			pod:       podWith("  restartPolicy: OnFailure\n  containers: [{name: app, image: a}]"),
			templates: one("  jobPolicy: Keep\n  containers: [{name: shipper, image: s}]"),
			warnHas:   []string{`sidecar template "t" adds regular containers to a pod that runs to completion`, "jobPolicy to Native"},
			check:     expectContainers("app", "shipper"),
		},
		{
			name:      "jobPolicy Skip leaves a Never pod without the template, with its own reason",
			pod:       podWith("  restartPolicy: Never\n  containers: [{name: app, image: a}]"),
			templates: one("  jobPolicy: Skip\n  containers: [{name: shipper, image: s}]"),
			decisions: []want{{"team-a", "t", OutcomeNotApplicable, ReasonJobPolicySkip}},
			noPatch:   true,
		},
		{
			name:      "jobPolicy Skip still injects into a pod that runs until deleted",
			pod:       podWith("  restartPolicy: Always\n  containers: [{name: app, image: a}]"),
			templates: one("  jobPolicy: Skip\n  containers: [{name: shipper, image: s}]"),
			decisions: []want{{"team-a", "t", I, ReasonRequested}},
			check:     expectContainers("app", "shipper"),
		},
		{
			name:      "an unknown jobPolicy makes the template invalid, naming the field",
			pod:       podWith("  restartPolicy: Never\n  containers: [{name: app, image: a}]"),
			templates: one("  jobPolicy: Sometimes\n  containers: [{name: shipper, image: s}]"),
			denied:    true,
			denyHas:   []string{"spec.jobPolicy must be Native, Skip or Keep"},
		},
		{
			name:      "volumes are appended, shared with the sidecars",
			pod:       podWith("  containers: [{name: app, image: a}]\n  volumes: [{name: data, emptyDir: {}}]"),
			templates: one("  volumes: [{name: shared, emptyDir: {}}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if len(p.Spec.Volumes) != 2 || p.Spec.Volumes[0].Name != "data" || p.Spec.Volumes[1].Name != "shared" || p.Spec.Volumes[1].EmptyDir == nil {
					t.Errorf("volumes = %+v", p.Spec.Volumes)
				}
			},
		},
		{
			name:      "volumeMounts, env and envFrom go to every application container, never to the template's sidecars nor to init containers",
			pod:       podWith("  initContainers: [{name: i1, image: i}]\n  containers: [{name: app, image: a}, {name: b, image: b}]"),
			templates: one("  containers: [{name: side, image: s}]\n  volumes: [{name: v, emptyDir: {}}]\n  volumeMounts: [{name: v, mountPath: /v}]\n  env: [{name: E, value: e}]\n  envFrom: [{configMapRef: {name: cm}}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				for _, n := range []string{"app", "b"} {
					c := container(t, p, n)
					if v, ok := envValue(c, "E"); !ok || v != "e" {
						t.Errorf("%s: env E = %q, %v", n, v, ok)
					}
					if _, ok := mountAt(c, "/v"); !ok {
						t.Errorf("%s: no mount /v", n)
					}
					if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != "cm" {
						t.Errorf("%s: envFrom = %+v", n, c.EnvFrom)
					}
				}
				s := container(t, p, "side")
				if len(s.Env)+len(s.VolumeMounts)+len(s.EnvFrom) != 0 {
					t.Errorf("the sidecar received application env/mounts: %+v", s)
				}
				if len(p.Spec.InitContainers[0].Env)+len(p.Spec.InitContainers[0].VolumeMounts) != 0 {
					t.Errorf("the pod's init container received env/mounts")
				}
			},
		},
		{
			name:      "an env var the container already has keeps the container's value; a mount path it already has keeps its mount",
			pod:       podWith("  containers: [{name: app, image: a, env: [{name: E, value: mine}], volumeMounts: [{name: own, mountPath: /v}]}]\n  volumes: [{name: own, emptyDir: {}}]"),
			templates: one("  volumes: [{name: v, emptyDir: {}}]\n  volumeMounts: [{name: v, mountPath: /v}, {name: v, mountPath: /w}]\n  env: [{name: E, value: theirs}, {name: F, value: f}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				c := container(t, p, "app")
				if v, _ := envValue(c, "E"); v != "mine" {
					t.Errorf("E = %q, want the container's value", v)
				}
				if v, _ := envValue(c, "F"); v != "f" {
					t.Errorf("F = %q", v)
				}
				if len(c.Env) != 2 {
					t.Errorf("env = %+v", c.Env)
				}
				if m, _ := mountAt(c, "/v"); m.Name != "own" {
					t.Errorf("mount /v = %+v, want the container's", m)
				}
				if len(c.VolumeMounts) != 2 {
					t.Errorf("mounts = %+v", c.VolumeMounts)
				}
			},
		},
		{
			name:      "an env var set with valueFrom counts as present",
			pod:       podWith("  containers: [{name: app, image: a, env: [{name: E, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]"),
			templates: one("  env: [{name: E, value: theirs}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				c := container(t, p, "app")
				if len(c.Env) != 1 || c.Env[0].ValueFrom == nil {
					t.Errorf("env = %+v", c.Env)
				}
			},
		},
		{
			name:      "an identical envFrom entry is not added twice",
			pod:       podWith("  containers: [{name: app, image: a, envFrom: [{configMapRef: {name: cm}}]}]"),
			templates: one("  envFrom: [{configMapRef: {name: cm}}, {secretRef: {name: s}}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if c := container(t, p, "app"); len(c.EnvFrom) != 2 {
					t.Errorf("envFrom = %+v", c.EnvFrom)
				}
			},
		},
		{
			name:      "targetContainers limits env and mounts to the named containers, and a missing name gives a warning",
			pod:       podWith("  containers: [{name: app, image: a}, {name: other, image: o}]"),
			templates: one("  targetContainers: [app, ghost]\n  env: [{name: E, value: e}]"),
			warnHas:   []string{"ghost"},
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if _, ok := envValue(container(t, p, "app"), "E"); !ok {
					t.Errorf("app lacks E")
				}
				if _, ok := envValue(container(t, p, "other"), "E"); ok {
					t.Errorf("other got E")
				}
			},
		},
		{
			name:      "imagePullSecrets are added unless the pod already names them",
			pod:       podWith("  containers: [{name: app, image: a}]\n  imagePullSecrets: [{name: regcred}]"),
			templates: one("  imagePullSecrets: [{name: regcred}, {name: mirror}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if len(p.Spec.ImagePullSecrets) != 2 || p.Spec.ImagePullSecrets[1].Name != "mirror" {
					t.Errorf("imagePullSecrets = %+v", p.Spec.ImagePullSecrets)
				}
			},
		},
		{
			name:      "annotations and labels are added; a key the pod sets keeps the pod's value",
			pod:       "metadata: {name: w, namespace: team-a, labels: {a: pod}, annotations: {sidecar.dev/inject: t, x/y: pod}}\nspec: {containers: [{name: app, image: a}]}",
			templates: one("  labels: {a: tmpl, b: tmpl}\n  annotations: {x/y: tmpl, \"z.example/w\": tmpl}"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if p.Labels["a"] != "pod" || p.Labels["b"] != "tmpl" || p.Annotations["x/y"] != "pod" || p.Annotations["z.example/w"] != "tmpl" {
					t.Errorf("labels %v annotations %v", p.Labels, p.Annotations)
				}
			},
		},
		{
			name:      "shareProcessNamespace is set when the pod does not set it",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  shareProcessNamespace: true"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if p.Spec.ShareProcessNamespace == nil || !*p.Spec.ShareProcessNamespace {
					t.Errorf("shareProcessNamespace = %v", p.Spec.ShareProcessNamespace)
				}
			},
		},
		{
			name:      "shareProcessNamespace the pod already sets to the same value is no conflict",
			pod:       podWith("  shareProcessNamespace: true\n  containers: [{name: app, image: a}]"),
			templates: one("  shareProcessNamespace: true\n  containers: [{name: s, image: s}]"),
			decisions: []want{{"team-a", "t", I, ReasonRequested}},
		},
		{
			name:      "hostNetwork, hostPID and hostIPC are set by a cluster-wide template",
			pod:       "metadata: {name: w, namespace: team-a, annotations: {sidecar.dev/inject: t}}\nspec: {containers: [{name: app, image: a}]}",
			templates: "metadata: {name: t, namespace: sidecar-injector}\nspec: {hostNetwork: true, hostPID: true, hostIPC: true}",
			decisions: []want{{"sidecar-injector", "t", I, ReasonRequested}},
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if !p.Spec.HostNetwork || !p.Spec.HostPID || !p.Spec.HostIPC {
					t.Errorf("host settings not set: %+v", p.Spec)
				}
			},
		},
		{
			name:      "hostAliases: hostnames for an IP the pod lists are added to its entry; new IPs are appended",
			pod:       podWith("  containers: [{name: app, image: a}]\n  hostAliases: [{ip: 10.0.0.1, hostnames: [a]}]"),
			templates: one("  hostAliases: [{ip: 10.0.0.1, hostnames: [a, b]}, {ip: 10.0.0.2, hostnames: [c]}]"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				h := p.Spec.HostAliases
				if len(h) != 2 || strings.Join(h[0].Hostnames, ",") != "a,b" || h[1].IP != "10.0.0.2" {
					t.Errorf("hostAliases = %+v", h)
				}
			},
		},
		{
			name:      "dnsConfig is merged: missing nameservers, searches and options are added",
			pod:       podWith("  containers: [{name: app, image: a}]\n  dnsConfig: {nameservers: [1.1.1.1], options: [{name: ndots, value: \"2\"}]}"),
			templates: one("  dnsConfig: {nameservers: [1.1.1.1, 8.8.8.8], searches: [s.local], options: [{name: ndots, value: \"2\"}, {name: edns0}]}"),
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				d := p.Spec.DNSConfig
				if d == nil || strings.Join(d.Nameservers, ",") != "1.1.1.1,8.8.8.8" || strings.Join(d.Searches, ",") != "s.local" || len(d.Options) != 2 {
					t.Errorf("dnsConfig = %+v", d)
				}
			},
		},
		{
			name:      "the status annotation records the template, its generation, hash and what it added",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: "metadata: {name: t, namespace: team-a, generation: 7}\nspec: {containers: [{name: c, image: c}], initContainers: [{name: i, image: i}], volumes: [{name: v, emptyDir: {}}]}",
			check: func(t *testing.T, r *Result, p *corev1.Pod) {
				st := readStatus(t, p)
				if st == nil || len(st.Templates) != 1 {
					t.Fatalf("status = %+v", st)
				}
				e := st.Templates[0]
				if e.Namespace != "team-a" || e.Name != "t" || e.Generation != 7 || len(e.Hash) == 0 ||
					strings.Join(e.Containers, ",") != "c" || strings.Join(e.InitContainers, ",") != "i" || strings.Join(e.Volumes, ",") != "v" {
					t.Errorf("status entry = %+v", e)
				}
				d := r.Injected()
				if len(d) != 1 || d[0].Added == nil || strings.Join(d[0].Added.Containers, ",") != "c" {
					t.Errorf("decision Added = %+v", d)
				}
			},
		},
	})
}

func TestConflicts(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "a container name the pod already has denies the pod under Fail, naming template, field and name",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  containers: [{name: app, image: s}]"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`sidecar template "t": container name "app" already exists in pod`},
		},
		{
			name:      "an init container name the pod already has (as an init container) is a conflict",
			pod:       podWith("  initContainers: [{name: init, image: i}]\n  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: init, image: s}]"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, `"init"`},
		},
		{
			name:      "a template init container named like one of the pod's containers is a conflict (names are shared)",
			pod:       podWith("  containers: [{name: app, image: a}]"),
			templates: one("  initContainers: [{name: app, image: s, restartPolicy: Always}]"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, `"app"`},
		},
		{
			name:      "a volume name the pod already has is a conflict",
			pod:       podWith("  containers: [{name: app, image: a}]\n  volumes: [{name: data, emptyDir: {}}]"),
			templates: one("  volumes: [{name: data, emptyDir: {}}]"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, `volume`, `"data"`},
		},
		{
			name:      "under Ignore a conflict admits the pod without that template, nothing of it added, with a warning",
			pod:       podWith("  containers: [{name: app, image: a}]\n  volumes: [{name: data, emptyDir: {}}]"),
			templates: one("  failurePolicy: Ignore\n  containers: [{name: side, image: s}]\n  volumes: [{name: data, emptyDir: {}}]\n  env: [{name: E, value: e}]\n  labels: {l: v}"),
			decisions: []want{{"team-a", "t", SK, ReasonConflict}},
			warnHas:   []string{`"t"`, `"data"`},
			noPatch:   true,
		},
		{
			name:      "a shareProcessNamespace the pod sets to the other value is a conflict",
			pod:       podWith("  shareProcessNamespace: false\n  containers: [{name: app, image: a}]"),
			templates: one("  shareProcessNamespace: true"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, "shareProcessNamespace"},
		},
		{
			name:      "a hostNetwork the pod sets to the other value is a conflict",
			pod:       "metadata: {name: w, namespace: team-a, annotations: {sidecar.dev/inject: t}}\nspec: {hostNetwork: true, containers: [{name: app, image: a}]}",
			templates: "metadata: {name: t, namespace: sidecar-injector}\nspec: {hostNetwork: false}",
			decisions: []want{{"sidecar-injector", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, "hostNetwork"},
		},
		{
			name:      "a dnsConfig option the pod sets to another value is a conflict",
			pod:       podWith("  containers: [{name: app, image: a}]\n  dnsConfig: {options: [{name: ndots, value: \"1\"}]}"),
			templates: one("  dnsConfig: {options: [{name: ndots, value: \"5\"}]}"),
			decisions: []want{{"team-a", "t", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, "ndots"},
		},
		{
			name:      "a denial names every template that failed",
			pod:       "metadata: {name: w, namespace: team-a, annotations: {sidecar.dev/inject: \"t, u\"}}\nspec: {containers: [{name: app, image: a}], volumes: [{name: data, emptyDir: {}}]}",
			templates: one("  containers: [{name: app, image: s}]") + "\n---\nmetadata: {name: u, namespace: team-a}\nspec: {volumes: [{name: data, emptyDir: {}}]}",
			decisions: []want{{"team-a", "t", DN, ReasonConflict}, {"team-a", "u", DN, ReasonConflict}},
			denied:    true,
			denyHas:   []string{`"t"`, `"u"`, `"app"`, `"data"`},
		},
	})
}

// TestMergesAreIdempotent: for pods whose hostAliases and dnsConfig have odd but valid shapes, the second pass
// adds nothing and denies nothing (SPEC guarantee 2).
func TestMergesAreIdempotent(t *testing.T) {
	for _, c := range []struct{ name, pod, template string }{
		{"a pod listing one IP twice: a hostname in its second entry is not added again",
			"  hostAliases: [{ip: 10.0.0.1, hostnames: [a]}, {ip: 10.0.0.1, hostnames: [b]}]",
			"  hostAliases: [{ip: 10.0.0.1, hostnames: [a, b, c]}]"},
		{"a pod listing one IP twice, one entry without hostnames",
			"  hostAliases: [{ip: 10.0.0.1}, {ip: 10.0.0.1, hostnames: [b]}]",
			"  hostAliases: [{ip: 10.0.0.1, hostnames: [b, c]}, {ip: 10.0.0.2}]"},
		{"a pod naming a dnsConfig option twice with different values, one of them the template's",
			"  dnsConfig: {options: [{name: ndots, value: '1'}, {name: ndots, value: '5'}]}",
			"  dnsConfig: {options: [{name: ndots, value: '5'}, {name: edns0}]}"},
		{"a pod repeating nameservers and searches that the template also lists",
			"  dnsConfig: {nameservers: [1.1.1.1, 1.1.1.1], searches: [a.local, a.local]}",
			"  dnsConfig: {nameservers: [1.1.1.1, 8.8.8.8], searches: [a.local, b.local]}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod := "metadata: {name: w, annotations: {sidecar.dev/inject: t}}\nspec:\n  containers: [{name: app, image: a}]\n" + c.pod
			first, second := reinject(t, pod, tmpl("team-a", "t", c.template), "team-a", func(*corev1.Pod) {})
			if len(first.Patch) == 0 {
				t.Fatalf("the first pass added nothing: the case tests nothing")
			}
			if second.Denied || len(second.Patch) != 0 {
				t.Errorf("second pass: denied=%v %s, patch %s", second.Denied, second.DenyMessage, mustPatchJSON(t, second))
			}
		})
	}
}
