//go:build race

package webhook

// raceEnabled: the race detector makes sync.Pool drop a share of what is put back, so allocation counts of
// pooled paths are not checked under it.
const raceEnabled = true
