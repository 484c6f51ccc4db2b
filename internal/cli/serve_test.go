package cli

import (
	"math"
	"reflect"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"github.com/spf13/pflag"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func TestServeGivesTheRuntimeNineTenthsOfTheContainersMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	for _, c := range []struct {
		name     string
		env      map[string]string
		provider memlimit.Provider
		want     int64
	}{
		{"a 256 MiB container limit", nil, memlimit.Limit(256 << 20), 256 << 20 * 9 / 10},
		{"no container limit", nil, func() (uint64, error) { return 0, memlimit.ErrNoLimit }, math.MaxInt64},
		{"GOMEMLIMIT set by the user wins", map[string]string{"GOMEMLIMIT": "100MiB"}, memlimit.Limit(256 << 20), 12345},
		{"AUTOMEMLIMIT=off leaves it alone", map[string]string{"AUTOMEMLIMIT": "off"}, memlimit.Limit(256 << 20), 12345},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			debug.SetMemoryLimit(12345)
			setMemoryLimit(logr.Discard(), c.provider)
			if got := debug.SetMemoryLimit(-1); got != c.want {
				t.Errorf("GOMEMLIMIT = %d, want %d", got, c.want)
			}
		})
	}
}

func TestServeImageFlagsDeclareTheImageTolerance(t *testing.T) {
	var tol inject.ImageTolerance
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addImageFlags(f, &tol)
	if err := f.Parse(nil); err != nil || len(tol.Mirrors) != 0 || tol.DigestPinning {
		t.Fatalf("defaults: %+v (%v), want none tolerated", tol, err)
	}
	if err := f.Parse([]string{"--image-mirrors=mirror.example/dockerhub,proxy.example", "--allow-digest-pinning"}); err != nil {
		t.Fatal(err)
	}
	if want := (inject.ImageTolerance{Mirrors: []string{"mirror.example/dockerhub", "proxy.example"}, DigestPinning: true}); !reflect.DeepEqual(tol, want) {
		t.Errorf("tolerance %+v, want %+v", tol, want)
	}
}

func TestServeLimitFlagsSetTheEnginesLimits(t *testing.T) {
	var l inject.Limits
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addLimitFlags(f, &l)
	if err := f.Parse(nil); err != nil || l != inject.DefaultLimits {
		t.Fatalf("defaults: %+v (%v), want %+v", l, err, inject.DefaultLimits)
	}
	if err := f.Parse([]string{"--max-requested-names=3", "--max-name-length=10", "--max-rendered-bytes=100", "--max-patch-bytes=2048"}); err != nil {
		t.Fatal(err)
	}
	if want := (inject.Limits{MaxRequestedNames: 3, MaxNameLength: 10, MaxRenderedBytes: 100, MaxPatchBytes: 2048}); l != want {
		t.Errorf("limits %+v, want %+v", l, want)
	}
}
