package hardening

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// loadWorkers is the number of concurrent keep-alive connections of the load generator.
const loadWorkers = 8

// soakDuration is HARDENING_SOAK (e.g. 5m, set by hack/soak.sh) or 10 s.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("HARDENING_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("HARDENING_SOAK=%q: %v", v, err)
		}
		return d
	}
	return 10 * time.Second
}

// subprocess is bin/sidecar-injector serve, built by TestMain.
type subprocess struct {
	cmd        *exec.Cmd
	addr       string
	healthAddr string
	exited     chan error
	stderr     *strings.Builder
}

func startSubprocess(t *testing.T, extraArgs ...string) *subprocess {
	t.Helper()
	select {
	case <-binaryDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("the binary was not built within 3 minutes")
	}
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	certDir := t.TempDir()
	if err := ca.writeServing(certDir, 1); err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	hport, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &subprocess{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), healthAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(hport)),
		exited: make(chan error, 1), stderr: &strings.Builder{}}
	s.cmd = exec.Command(binary, "serve", "--kubeconfig", kubeconfig, "--cert-dir", certDir, "--webhook-host", "127.0.0.1",
		"--webhook-port", strconv.Itoa(port), "--health-probe-bind-address", s.healthAddr, "--metrics-bind-address", "0",
		"--namespace", injectorNS, "--disable-controller")
	s.cmd.Args = append(s.cmd.Args, extraArgs...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	if err := waitReady(s.healthAddr, s.exited); err != nil {
		t.Fatalf("subprocess: %v\n%s", err, tail(s.stderr.String(), 3000))
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestSoakAtHalfThePeakRate measures the peak admission rate of the real binary, then sends admissions at half
// of it for the soak duration (10 s, or HARDENING_SOAK): no admission may fail, and the resident memory of the
// process, sampled after a warm-up, stays within ±10% of its median.
func TestSoakAtHalfThePeakRate(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	p := startSubprocess(t)
	ensureProbeTemplate(t, p.addr)
	dur := soakDuration(t)
	peakFor := 3 * time.Second
	if dur > time.Minute {
		peakFor = 20 * time.Second
	}
	peakRes, peak := loadFor(peakFor, p.addr, loadWorkers, 0)
	t.Logf("peak: %.0f admissions/s over %s with %d connections (%s)", peak, peakFor, loadWorkers, peakRes)
	if peakRes.failed.Load() > 0 {
		t.Fatalf("admissions failed at peak: %s", peakRes)
	}
	rate := math.Max(peak/2, 10)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	warmup := dur * 3 / 10
	samples := make(chan []uint64, 1)
	go func() {
		var s []uint64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				samples <- s
				return
			case <-tick.C:
				if time.Since(start) < warmup {
					continue
				}
				if v, err := rss(p.cmd.Process.Pid); err == nil {
					s = append(s, v)
				}
			}
		}
	}()
	start := time.Now()
	res := load(ctx, p.addr, loadWorkers, rate)
	got := float64(res.ok.Load()) / time.Since(start).Seconds()
	rs := <-samples
	t.Logf("soak: %s at %.0f/s (target %.0f/s): %s", dur, got, rate, res)
	if res.failed.Load() > 0 || res.refused.Load() > 0 {
		t.Errorf("admissions failed during the soak: %s", res)
	}
	if got < rate*0.8 {
		t.Errorf("the soak reached %.0f/s, under 80%% of the target %.0f/s", got, rate)
	}
	if len(rs) < 4 {
		t.Fatalf("only %d memory samples", len(rs))
	}
	sorted := slices.Clone(rs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	med := sorted[len(sorted)/2]
	lo, hi := sorted[0], sorted[len(sorted)-1]
	t.Logf("resident memory after warm-up: median %.1f MiB, min %.1f, max %.1f, first %.1f, last %.1f (%d samples)",
		mib(med), mib(lo), mib(hi), mib(rs[0]), mib(rs[len(rs)-1]), len(rs))
	if float64(hi) > float64(med)*1.10 || float64(lo) < float64(med)*0.90 {
		t.Errorf("resident memory not flat: min %.1f MiB, max %.1f MiB, median %.1f MiB (bound ±10%%)", mib(lo), mib(hi), mib(med))
	}
}

// shutdownUnderLoad loads addr, triggers stop after a second, waits for the server to exit and checks that no
// request failed: requests in flight are answered, and after the server closed its listener requests are
// refused at dial (never written). It returns the time the server took to exit.
func shutdownUnderLoad(t *testing.T, addr string, stop func(), exited <-chan error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan *loadResult, 1)
	go func() { results <- load(ctx, addr, loadWorkers, 0) }()
	time.Sleep(time.Second) // load runs for a second before the stop (a duration, not a synchronisation)
	start := time.Now()
	stop()
	var took time.Duration
	select {
	case err := <-exited:
		took = time.Since(start)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the server exited with %v", err)
		}
	case <-time.After(server.ShutdownDrain + 20*time.Second):
		t.Fatal("the server did not exit within 20s of the stop")
	}
	cancel()
	res := <-results
	t.Logf("stopped under load: exited after %s; %s", took.Round(time.Millisecond), res)
	if res.failed.Load() > 0 {
		t.Errorf("requests failed across the shutdown: %s", res)
	}
	if res.ok.Load() == 0 {
		t.Errorf("no request succeeded: %s", res)
	}
	return took
}

// TestSIGTERMUnderLoadDrainsInFlightRequests sends SIGTERM to the real binary while it serves: it exits 0 and
// no request fails.
func TestSIGTERMUnderLoadDrainsInFlightRequests(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	p := startSubprocess(t)
	ensureProbeTemplate(t, p.addr)
	shutdownUnderLoad(t, p.addr, func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) }, p.exited)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, tail(p.stderr.String(), 3000))
	}
}

// TestContextCancelUnderLoadDrainsInFlightRequests cancels server.Run's context while it serves.
func TestContextCancelUnderLoadDrainsInFlightRequests(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	s, err := startInProcess(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	ensureProbeTemplate(t, s.addr)
	shutdownUnderLoad(t, s.addr, s.cancel, s.done)
}

func servingSerial(addr string) (int64, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConfig())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestCertificateRotationUnderLoad writes a new certificate into --cert-dir while admissions flow: handshakes
// after the swap present the new serial, and no admission fails.
func TestCertificateRotationUnderLoad(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan *loadResult, 1)
	go func() { results <- load(ctx, srv.addr, 4, 0) }()
	for serial := int64(100); serial <= 101; serial++ {
		if err := ca.writeServing(srv.certDir, serial); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		testenv.Eventually(t, 25*time.Second, fmt.Sprintf("the server presents certificate %d", serial), func() error {
			got, err := servingSerial(srv.addr)
			if err != nil {
				return err
			}
			if got != serial {
				return fmt.Errorf("serial %d", got)
			}
			return nil
		})
		t.Logf("certificate %d served %s after it was written", serial, time.Since(start).Round(time.Millisecond))
		for i := 0; i < 20; i++ {
			if got, err := servingSerial(srv.addr); err != nil || got != serial {
				t.Fatalf("handshake %d after the swap: serial %d, err %v; want %d", i, got, err, serial)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // keep the load on the new certificate for a moment (a duration)
	cancel()
	res := <-results
	t.Logf("load across two rotations: %s", res)
	if res.failed.Load() > 0 || res.refused.Load() > 0 || res.ok.Load() == 0 {
		t.Errorf("admissions failed across the rotation: %s", res)
	}
}

// TestTheAPIServerGoingAwayDoesNotStopTheWebhook cuts the main server's connection to the API server (a TCP
// proxy between them): it keeps answering, per the templates it last knew (one created during the cut is not
// known, one from before still is), stays healthy, and after the API server comes back it sees new templates.
func TestTheAPIServerGoingAwayDoesNotStopTheWebhook(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	ns := "cut"
	mk := func(name string) {
		st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: name},
			Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: name + "-c", Image: "example.com/x:1"}}}}
		if err := k8s.Create(ctxFor(t), st); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), st) })
	}
	c := newClient()
	admitTemplate := func(name string) (bool, string, error) {
		status, ar, data, err := post(c, srv.addr, "application/json", strings.NewReader(string(reviewJSON("cut-"+name, ns, podJSON(ns, name)))))
		if err != nil {
			return false, "", err
		}
		if status != http.StatusOK || ar == nil {
			return false, "", fmt.Errorf("HTTP %d %.200s", status, data)
		}
		msg := ""
		if ar.Response.Result != nil {
			msg = ar.Response.Result.Message
		}
		return ar.Response.Allowed && strings.Contains(string(ar.Response.Patch), name+"-c"), msg, nil
	}
	mk("before-cut")
	testenv.Eventually(t, 10*time.Second, "before-cut served", func() error {
		if ok, msg, err := admitTemplate("before-cut"); !ok {
			return fmt.Errorf("not injected: %s %v", msg, err)
		}
		return nil
	})

	apiProx.cut()
	cutAt := time.Now()
	restored := false
	defer func() {
		if !restored {
			apiProx.restore()
		}
	}()
	mk("during-cut")
	hc := &http.Client{Timeout: 2 * time.Second}
	cutFor := 5 * time.Second
	if testing.Short() {
		cutFor = 3 * time.Second
	}
	n := 0
	for time.Since(cutAt) < cutFor {
		if ok, msg, err := admitTemplate("before-cut"); !ok {
			t.Fatalf("during the cut, a known template is not injected: %s %v", msg, err)
		}
		ok, msg, err := admitTemplate("during-cut")
		if err != nil || ok || !strings.Contains(msg, "during-cut") {
			t.Fatalf("during the cut, a template the webhook cannot know: injected %v, message %q, err %v; want a denial naming it", ok, msg, err)
		}
		select {
		case err := <-srv.done:
			t.Fatalf("server.Run returned during the cut: %v", err)
		default:
		}
		resp, err := hc.Get("http://" + srv.healthAddr + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz during the cut: %v %v", resp, err)
		}
		resp.Body.Close()
		n++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d rounds of admissions answered from memory during a %s cut", n, cutFor)

	apiProx.restore()
	restored = true
	start := time.Now()
	testenv.Eventually(t, 45*time.Second, "after the API server is back, the template created during the cut is served", func() error {
		if ok, msg, err := admitTemplate("during-cut"); !ok {
			return fmt.Errorf("not injected: %s %v", msg, err)
		}
		return nil
	})
	t.Logf("the webhook caught up %s after the API server came back", time.Since(start).Round(time.Millisecond))
	assertServes(t, srv.addr, "the API server came back")
}
