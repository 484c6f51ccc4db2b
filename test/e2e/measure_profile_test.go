package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The API server's CPU profile during a path of TestMeasureCreationsThroughTheAPIServer, to see where its extra
// CPU per webhook call goes. kube-apiserver serves /debug/pprof when --profiling is on (its default, which
// hack/cluster.sh keeps); the suite's admin credentials (system:masters) may read it.

const (
	profileSeconds = 10   // the length of one profile; pods are created for as long as it runs
	profileMaxPods = 5000 // bounds the pods created during one profile
)

// profileAPIServer creates the path's pods while the API server profiles itself for profileSeconds, writes the
// profile to dir/apiserver-<path>.pprof and logs how many pods it saw created, to read it per pod.
func profileAPIServer(t *testing.T, dir string, ph *measurePhase) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	type result struct {
		profile []byte
		err     error
	}
	done := make(chan result, 1)
	var stop atomic.Bool
	go func() {
		defer stop.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), (profileSeconds+30)*time.Second)
		defer cancel()
		b, err := clientset.RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(profileSeconds)).DoRaw(ctx)
		done <- result{b, err}
	}()
	pods := createMeasurePods(t, ph, profileMaxPods, 100, &stop)
	r := <-done
	deleteMeasurePods(t, ph.ns)
	if r.err != nil {
		t.Fatalf("the API server's CPU profile: %v", r.err)
	}
	name := strings.Fields(ph.name)[0]
	file := filepath.Join(dir, "apiserver-"+name+".pprof")
	if err := os.WriteFile(file, r.profile, 0o644); err != nil {
		t.Fatal(err)
	}
	logf(t, "the API server's CPU profile of %d s while %d pods were created (%s): %s", profileSeconds, pods, ph.name, file)
}
