package version

import (
	"runtime"
	"testing"
)

func TestTheLinkerStampedCommitWinsOverTheBuildInfo(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v1.2.3", "0123456789abcdef"
	got := Get()
	want := Build{Version: "v1.2.3", Commit: "0123456789abcdef", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if got != want {
		t.Errorf("Get() = %+v, want %+v", got, want)
	}
	Commit = ""
	if c := Get().Commit; c == "" {
		t.Error("without a stamped commit, Commit is empty; want the build info's revision or \"unknown\"")
	}
}
