package inject

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// amplifier is a pod with n application containers and an annotation "big" of size bytes, requesting the
// template "amp".
func amplifier(n, size int) []byte {
	var cs []string
	for i := range n {
		cs = append(cs, fmt.Sprintf(`{"name":"app-%d","image":"a"}`, i))
	}
	return []byte(`{"metadata":{"name":"p","annotations":{"sidecar.dev/inject":"amp","big":"` + strings.Repeat("x", size) +
		`"}},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`)
}

// ampTemplate copies the annotation "big" into every application container's env, copies times over.
func ampTemplate(t testing.TB, policy string, copies int) []*Template {
	refs := strings.Repeat("{{ pod.annotations.big }}", copies)
	return compileAll(parseTemplates(t, []byte("metadata: {name: amp, namespace: team-a}\nspec:\n  failurePolicy: "+policy+
		"\n  env: [{name: BIG, value: '"+refs+"'}]\n")), injectorNS)
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pod       []byte
		policy    string
		copies    int
		limits    Limits
		denyHas   string // empty: not denied
		warnHas   string
		patchSize int // when not denied, the patch must be at least this big (it was not cut)
	}{
		{name: "a per-pod value that would copy more than max-rendered-bytes denies the pod, naming the template and the limit",
			pod: amplifier(1, 300<<10), policy: "Fail", copies: 1,
			denyHas: `sidecar template "amp" exceeds the injector's limit max-rendered-bytes (262144)`},
		{name: "a small value named many times counts every copy",
			pod: amplifier(1, 10<<10), policy: "Fail", copies: 30,
			denyHas: `sidecar template "amp" exceeds the injector's limit max-rendered-bytes (262144)`},
		{name: "a value copied into every one of 100 application containers counts once per container against max-patch-bytes",
			pod: amplifier(100, 20<<10), policy: "Fail", copies: 1,
			denyHas: `sidecar template "amp" exceeds the injector's limit max-patch-bytes (1048576): the patch would grow to at least`},
		{name: "under failurePolicy Ignore the pod is admitted without the template, and a warning names the limit",
			pod: amplifier(100, 20<<10), policy: "Ignore", copies: 1,
			warnHas: `sidecar template "amp" exceeds the injector's limit max-patch-bytes`},
		{name: "the limits are configurable: the same pod passes under higher ones",
			pod: amplifier(100, 20<<10), policy: "Fail", copies: 1, limits: Limits{MaxPatchBytes: 4 << 20},
			patchSize: 100 * 20 << 10},
		{name: "and is denied under lower ones",
			pod: amplifier(2, 1<<10), policy: "Fail", copies: 1, limits: Limits{MaxRenderedBytes: 1000},
			denyHas: "max-rendered-bytes (1000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Inject(Request{Pod: tc.pod, Namespace: "team-a", InjectorNamespace: injectorNS,
				Templates: ampTemplate(t, tc.policy, tc.copies), Limits: tc.limits})
			if err != nil {
				t.Fatal(err)
			}
			if tc.denyHas != "" {
				if !r.Denied || !strings.Contains(r.DenyMessage, tc.denyHas) || len(r.Patch) > 0 {
					t.Fatalf("denied %v (%q), want a denial containing %q", r.Denied, r.DenyMessage, tc.denyHas)
				}
				if d, _ := findDecision(r, "team-a", "amp"); d.Reason != ReasonLimitExceeded {
					t.Errorf("reason %s, want %s", d.Reason, ReasonLimitExceeded)
				}
				return
			}
			if r.Denied {
				t.Fatalf("denied: %s", r.DenyMessage)
			}
			if tc.warnHas != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), tc.warnHas) {
				t.Errorf("warnings %q, want one containing %q", r.Warnings, tc.warnHas)
			}
			if patch := mustPatchJSON(t, r); len(patch) < tc.patchSize {
				t.Errorf("patch of %d bytes, want at least %d", len(patch), tc.patchSize)
			}
		})
	}
}

// Work stops between templates once the request's context is done: the API server has given up on it.
func TestInjectStopsWhenTheRequestIsDone(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("the API server's timeout passed")
	cancel(cause)
	_, err := Inject(Request{Pod: amplifier(1, 10), Namespace: "team-a", InjectorNamespace: injectorNS,
		Templates: ampTemplate(t, "Fail", 1), Context: ctx})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "stopped after 0 of 1 templates") {
		t.Fatalf("error %v, want the request's cause after 0 of 1 templates", err)
	}
	if _, err := Inject(Request{Pod: amplifier(1, 10), Namespace: "team-a", InjectorNamespace: injectorNS,
		Templates: ampTemplate(t, "Fail", 1), Context: context.Background()}); err != nil {
		t.Fatalf("a live context: %v", err)
	}
}

// BenchmarkAmplification: the amplification attack: a 2 MiB pod of 100 containers whose annotation a template
// copies into every container. answer-bytes is what the webhook would send back (the patch, or the denial).
func BenchmarkAmplification(b *testing.B) {
	pod := amplifier(100, 2<<20)
	ts := ampTemplate(b, "Fail", 1)
	req := Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts, OmitNotApplicable: true}
	b.ReportAllocs()
	answer := 0
	for b.Loop() {
		r, err := Inject(req)
		if err != nil {
			b.Fatal(err)
		}
		patch, _ := r.PatchJSON()
		answer = len(patch) + len(r.DenyMessage)
	}
	b.ReportMetric(float64(answer), "answer-bytes")
}
