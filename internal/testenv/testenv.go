// Package testenv is what the test packages share to run against a real kube-apiserver and etcd (envtest): where
// the repository is, where the control-plane binaries and helm are, one policy for when they are missing, and a
// bounded poll. Only tests import it.
//
// The policy for a missing binary: the test is skipped, with a message saying how to get it, unless CI is set
// (CI=true, CI=1, ...: anything but empty or false), where it fails instead, so that a CI job that lost its
// binaries cannot pass by skipping.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// RepoRoot walks up from the working directory to the directory that holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// CRDDir is config/crd/bases: the CRDs as generated from internal/api.
func CRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "crd", "bases"), nil
}

// Assets returns the directory of kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else <repo>/bin (where `make
// control-plane` builds them). The error says which binary is missing and how to get it. Set the directory as
// envtest.Environment.BinaryAssetsDirectory (envtest reads $KUBEBUILDER_ASSETS itself when it is set).
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make control-plane` (or set KUBEBUILDER_ASSETS)", b, dir)
		}
	}
	return dir, nil
}

// Helm returns the helm binary: $HELM, else <repo>/bin/helm (`make helm`).
func Helm() (string, error) {
	bin := os.Getenv("HELM")
	if bin == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		bin = filepath.Join(root, "bin", "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("helm not found at %s: run `make helm` (or set HELM)", bin)
	}
	return bin, nil
}

// Promtool returns the promtool binary: $PROMTOOL, else <repo>/bin/promtool (`make promtool`).
func Promtool() (string, error) { return tool("PROMTOOL", "promtool", "make promtool") }

// MonitoringCRDs returns the directory of the Prometheus Operator's CRDs: $MONITORING_CRDS, else
// <repo>/bin/monitoring-crds (`make monitoring-crds`).
func MonitoringCRDs() (string, error) {
	return tool("MONITORING_CRDS", "monitoring-crds", "make monitoring-crds")
}

// CycloneDXGomod returns the SBOM generator: $CYCLONEDX_GOMOD, else <repo>/bin/cyclonedx-gomod
// (`make cyclonedx-gomod`).
func CycloneDXGomod() (string, error) {
	return tool("CYCLONEDX_GOMOD", "cyclonedx-gomod", "make cyclonedx-gomod")
}

// tool returns $env, else <repo>/bin/name, with an error saying to run make when it does not exist.
func tool(env, name, make string) (string, error) {
	path := os.Getenv(env)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, "bin", name)
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `%s` (or set %s)", name, path, make, env)
	}
	return path, nil
}

// RequireTool ends the test when get fails (Promtool, MonitoringCRDs): skipped, or failed under CI.
func RequireTool(tb testing.TB, get func() (string, error)) string {
	tb.Helper()
	path, err := get()
	if err != nil {
		skipOrFail(tb, err)
	}
	return path
}

// InCI reports whether the tests run in CI: $CI is set to anything but a false value ("", "false", "0", ...).
func InCI() bool {
	v := os.Getenv("CI")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// Require returns Assets, or ends the test when the binaries are missing: skipped, or failed under CI.
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := Assets()
	if err != nil {
		skipOrFail(tb, err)
	}
	return dir
}

// RequireHelm returns Helm, or ends the test when helm is missing: skipped, or failed under CI.
func RequireHelm(tb testing.TB) string {
	tb.Helper()
	bin, err := Helm()
	if err != nil {
		skipOrFail(tb, err)
	}
	return bin
}

func skipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatal(err)
	}
	tb.Skip(err.Error() + "; skipping (CI is not set)")
}

// RequireMain is Require for a TestMain, which has no testing.TB: it returns Assets and ok. When the binaries
// are missing it prints why on stderr, prefixed with name, and returns ok false and the code TestMain exits
// with: 0 (the package is skipped) unless CI is set, 1 (it fails) under CI. Call it before starting anything
// that needs cleaning up.
func RequireMain(name string) (dir string, code int, ok bool) {
	dir, err := Assets()
	if err == nil {
		return dir, 0, true
	}
	if InCI() {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return "", 1, false
	}
	fmt.Fprintf(os.Stderr, "%s: %v; skipping the package (CI is not set)\n", name, err)
	return "", 0, false
}

// FreePort returns a loopback TCP port that nothing listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PollInterval is how often Eventually retries.
const PollInterval = 50 * time.Millisecond

// Eventually calls cond every PollInterval until it returns nil, and returns how long that took. When deadline
// passes first, it fails the test with what and cond's last error. cond runs on the test's goroutine: it may
// fail the test itself.
func Eventually(tb testing.TB, deadline time.Duration, what string, cond func() error) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			tb.Fatalf("%s: not true after %s: %v", what, deadline, err)
		}
		time.Sleep(PollInterval)
	}
}

// PodWebhookConfiguration is the MutatingWebhookConfiguration the injector's markers generate
// (config/webhook/manifests.yaml), named name and pointing at path of envtest's webhook-service: CREATE of v1
// Pods, failurePolicy Fail, no side effects, reinvocation IfNeeded. envtest rewrites the client config to its own
// host, port and CA.
func PodWebhookConfiguration(name, path string) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "mpod.sidecar.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Name: "webhook-service", Namespace: "system", Path: &path},
			},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
}
