package inject

import "fmt"

// Limits bound what one admission may ask of the engine, so that one pod cannot take the injector down for
// everyone (SPEC.md, "Limits"). A pod over a limit is denied with a message naming the limit (and the template,
// when one is involved). A zero field takes its default; the webhook sets them from `serve` flags.
type Limits struct {
	// MaxRequestedNames is how many distinct template names sidecar.dev/inject may list.
	MaxRequestedNames int
	// MaxNameLength is the longest name sidecar.dev/inject may list, in bytes.
	MaxNameLength int
	// MaxRenderedBytes bounds, per template and pod, the bytes its per-pod values ({{ pod.* }}, {{ params.* }})
	// copy into what it adds: a large annotation named many times stops here, while it is rendered.
	MaxRenderedBytes int
	// MaxPatchBytes bounds the patch of one admission: what a template adds to every application container
	// counts once per container. Counted while templates are planned, before anything is written.
	MaxPatchBytes int
}

// DefaultLimits are the limits of a zero Limits field: far above what any real pod asks for, far below what
// costs the injector.
var DefaultLimits = Limits{
	MaxRequestedNames: 64,  // a pod with more sidecars than this is a mistake or an attack
	MaxNameLength:     253, // a Kubernetes object name is at most 253 bytes: a longer one names nothing
	// A pod is stored in etcd whole, and etcd's default request limit is 1.5 MiB: a pod that grew by more than
	// these could not be stored anyway.
	MaxRenderedBytes: 256 << 10,
	MaxPatchBytes:    1 << 20,
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxRequestedNames <= 0 {
		l.MaxRequestedNames = DefaultLimits.MaxRequestedNames
	}
	if l.MaxNameLength <= 0 {
		l.MaxNameLength = DefaultLimits.MaxNameLength
	}
	if l.MaxRenderedBytes <= 0 {
		l.MaxRenderedBytes = DefaultLimits.MaxRenderedBytes
	}
	if l.MaxPatchBytes <= 0 {
		l.MaxPatchBytes = DefaultLimits.MaxPatchBytes
	}
	return l
}

// LimitError is a limit an admission exceeded; its message names the limit and the flag that sets it.
type LimitError struct {
	Template string // the template whose work exceeded it; empty for the pod as a whole
	Limit    string // the flag's name, e.g. max-requested-names
	Max      int
	What     string // what exceeded it, for people
}

func (e *LimitError) Error() string {
	who := "the pod"
	if e.Template != "" {
		who = fmt.Sprintf("sidecar template %q", e.Template)
	}
	return fmt.Sprintf("%s exceeds the injector's limit %s (%d): %s", who, e.Limit, e.Max, e.What)
}
