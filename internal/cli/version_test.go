package cli

import (
	"strings"
	"testing"
)

func TestVersionStringNamesTheStampedVersionAndCommit(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v9.8.7", "0123abc"
	got := VersionString()
	for _, want := range []string{"sidecar-injector v9.8.7 ", "(commit 0123abc,"} {
		if !strings.Contains(got, want) {
			t.Errorf("VersionString() = %q, want it to contain %q", got, want)
		}
	}
}
