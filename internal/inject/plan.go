package inject

import (
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// plan is what one template would add to the pod in its current state. It does not point to the template's
// instance (plan and commit take it beside the plan): the caller's plan and instance then stay on its stack.
type plan struct {
	containers          []item
	inits               []item
	initFirst           []bool // per entry of inits: placed before the pod's own init containers
	volumes, pulls      []item
	kept                Added // names the record attributes to this template that the pod has
	targets             []targetAdds
	labels, annotations []string
	bools               []int // indexes into state.bools (not pointers: the state can then live on a stack)
	boolVals            []bool
	aliasAdds           map[string][]string // ip -> hostnames to add; nil when the template adds no hostAliases
	aliasOrder          []string
	dnsNS, dnsSearch    []string
	dnsOpts             []corev1.PodDNSConfigOption
	warnings            []string
	conflicts           []string // why the template cannot be added; empty when it can
	bytes               int      // what the plan adds to the patch (planSize)
}

// targetAdds is what a template adds to one application container.
type targetAdds struct {
	a                    *appContainer
	env, mounts, envFrom []item
}

func (p *plan) empty() bool {
	n := len(p.containers) + len(p.inits) + len(p.volumes) + len(p.pulls) + len(p.labels) + len(p.annotations) +
		len(p.bools) + len(p.aliasOrder) + len(p.dnsNS) + len(p.dnsSearch) + len(p.dnsOpts)
	for _, ta := range p.targets {
		n += len(ta.env) + len(ta.mounts) + len(ta.envFrom)
	}
	return n == 0
}

// plan decides what the template adds (in, rendered for this pod) into p, which must be empty, or returns the
// conflicts that prevent it, without changing the state. One planner per concern; each reads the state and
// writes only p. The lists of what it adds share the instance's arrays when everything in them is added
// (subsequence).
//
// The patch the plan would add is counted before anything is written: past Limits.MaxPatchBytes for the whole
// admission, the template fails with a *LimitError.
func (s *state) plan(t *Template, in *instance, p *plan) error {
	s.planNamed(t, in, p)
	s.planTargets(t, in, p)
	s.planMetadata(in, p)
	s.planPodSettings(in, p)
	s.planHostAliases(in, p)
	s.planDNS(in, p)
	s.checkMountVolumes(in, p)
	if len(p.conflicts) > 0 {
		return errors.New(joinConflicts(p.conflicts))
	}
	if p.bytes = planSize(in, p); s.patchBytes+p.bytes > s.limits.MaxPatchBytes {
		return &LimitError{Template: t.Name, Limit: "max-patch-bytes", Max: s.limits.MaxPatchBytes,
			What: fmt.Sprintf("the patch would grow to at least %d bytes", s.patchBytes+p.bytes)}
	}
	return nil
}

// opBytes is what one add operation costs in the patch beside its value and path: a bound, not a count.
const opBytes = len(`{"op":"add","path":"/spec/initContainers/-","value":},`)

// planSize is about what the plan adds to the encoded patch: every item's encoding and an operation for it, what
// goes into application containers once per container, and the per-pod values the record keeps. Pod settings,
// hostAliases and dnsConfig are small and bounded by the template's own size, so they are not counted.
func planSize(in *instance, p *plan) int {
	n := valuesSize(in.values)
	for _, list := range [][]item{p.containers, p.inits, p.volumes, p.pulls} {
		for _, it := range list {
			n += opBytes + len(it.raw)
		}
	}
	for _, ta := range p.targets {
		for _, list := range [][]item{ta.env, ta.mounts, ta.envFrom} {
			for _, it := range list {
				n += opBytes + len(it.raw)
			}
		}
	}
	for _, k := range p.labels {
		n += opBytes + len(k) + len(in.labelVals[k])
	}
	for _, k := range p.annotations {
		n += opBytes + len(k) + len(in.annotationVals[k])
	}
	return n
}

func (p *plan) conflict(format string, args ...any) {
	p.conflicts = append(p.conflicts, fmt.Sprintf(format, args...))
}

// planNamed plans the pod-level named lists: containers, init containers, volumes, image pull secrets. A name
// the pod has is a conflict, unless the pod's record attributes it to this template (kept: already injected).
func (s *state) planNamed(t *Template, in *instance, p *plan) {
	var owned Added // names the record attributes to this template (already checked against the pod)
	if e := s.record(t.Namespace, t.Name); e != nil {
		owned = e.Added
	}
	p.containers = subsequence(in.containers, func(_ int, c item) bool {
		switch {
		case s.containers.isOwn(c.key) && slices.Contains(owned.Containers, c.key):
			p.kept.Containers = append(p.kept.Containers, c.key)
		case s.containers.has(c.key):
			p.conflict("container name %q already exists in pod%s", c.key, s.unverified(t, "containers", c.key))
		case s.inits.has(c.key):
			p.conflict("container name %q already exists in pod as an init container", c.key)
		default:
			return true
		}
		return false
	})
	p.inits = subsequence(in.initContainers, func(i int, c item) bool {
		switch {
		case s.inits.isOwn(c.key) && slices.Contains(owned.InitContainers, c.key):
			p.kept.InitContainers = append(p.kept.InitContainers, c.key)
		case s.inits.has(c.key):
			p.conflict("init container name %q already exists in pod%s", c.key, s.unverified(t, "initContainers", c.key))
		case s.containers.has(c.key):
			p.conflict("init container name %q already exists in pod as a container", c.key)
		default:
			p.initFirst = append(p.initFirst, in.initFirst[i])
			return true
		}
		return false
	})
	p.volumes = subsequence(in.volumes, func(_ int, v item) bool {
		switch {
		case s.volumes.isOwn(v.key) && slices.Contains(owned.Volumes, v.key):
			p.kept.Volumes = append(p.kept.Volumes, v.key)
		case s.volumes.has(v.key):
			p.conflict("volume name %q already exists in pod%s", v.key, s.unverified(t, "volumes", v.key))
		default:
			return true
		}
		return false
	})
	p.pulls = subsequence(in.pullSecrets, func(_ int, ps item) bool { return !s.pulls.has(ps.key) })
}

// planTargets plans what goes into the application containers: env, envFrom and volume mounts the container
// does not have yet (by name, canonical encoding, mount path).
func (s *state) planTargets(t *Template, in *instance, p *plan) {
	p.targets = s.targets(t, in, p)
	for i := range p.targets {
		ta := &p.targets[i]
		a := ta.a
		ta.env = subsequence(in.env, func(_ int, e item) bool { return !a.hasEnv(e.key) })
		ta.mounts = subsequence(in.mounts, func(_ int, m item) bool { return !a.hasMount(m.key) })
		if len(in.envFrom) > 0 {
			have := a.envFromKeys()
			ta.envFrom = subsequence(in.envFrom, func(_ int, e item) bool {
				return !slices.Contains(have, e.key) && !hasKey(a.addEnvFrom, e.key)
			})
		}
	}
}

// planMetadata plans the labels and annotations: a key the pod (or an earlier template) has keeps its value.
func (s *state) planMetadata(in *instance, p *plan) {
	p.labels = subsequence(in.labels, func(_ int, k string) bool {
		_, has := s.labels[k]
		_, added := s.addLabels[k]
		return !has && !added
	})
	p.annotations = subsequence(in.annotations, func(_ int, k string) bool {
		_, has := s.annotations[k]
		_, added := s.addAnnotations[k]
		return !has && !added
	})
}

// planPodSettings plans the boolean pod settings (shareProcessNamespace, hostNetwork, hostPID, hostIPC): set
// when nobody set them, a conflict when the pod or an earlier template set the other value.
func (s *state) planPodSettings(in *instance, p *plan) {
	for i, want := range []*bool{in.share, in.hostNetwork, in.hostPID, in.hostIPC} {
		if want == nil {
			continue
		}
		b := &s.bools[i]
		switch {
		case b.pod != nil && *b.pod != *want:
			p.conflict("%s: the pod sets %t, the template sets %t", b.field, *b.pod, *want)
		case b.set != nil && *b.set != *want:
			p.conflict("%s: sidecar template %q sets %t, this template sets %t", b.field, b.by, *b.set, *want)
		case b.pod == nil && b.set == nil:
			p.bools, p.boolVals = append(p.bools, i), append(p.boolVals, *want)
		}
	}
}

// planHostAliases plans the hostnames each IP lacks, and the IPs the pod has no entry for.
func (s *state) planHostAliases(in *instance, p *plan) {
	if len(in.hostAliases) > 0 {
		p.aliasAdds = map[string][]string{}
	}
	for _, h := range in.hostAliases {
		// A pod may list one IP in several entries: a hostname in any of them is there (the kubelet writes
		// them all to /etc/hosts), so that it is not added again on every pass.
		have := func(n string) bool {
			return slices.ContainsFunc(s.aliases, func(e *hostAliasEntry) bool { return e.ip == h.IP && e.hosts[n] })
		}
		for _, n := range h.Hostnames {
			if !have(n) && !slices.Contains(p.aliasAdds[h.IP], n) {
				if _, seen := p.aliasAdds[h.IP]; !seen {
					p.aliasOrder = append(p.aliasOrder, h.IP)
				}
				p.aliasAdds[h.IP] = append(p.aliasAdds[h.IP], n)
			}
		}
		if _, seen := p.aliasAdds[h.IP]; !seen && !s.hasAlias(h.IP) {
			p.aliasOrder = append(p.aliasOrder, h.IP) // an IP with no hostnames is still an entry
			p.aliasAdds[h.IP] = nil
		}
	}
}

// planDNS plans the nameservers, searches and options the pod's dnsConfig lacks; an option the pod sets to
// another value is a conflict.
func (s *state) planDNS(in *instance, p *plan) {
	d := in.dnsConfig
	if d == nil {
		return
	}
	for _, n := range d.Nameservers {
		if !s.dnsHasNS(n) && !slices.Contains(p.dnsNS, n) {
			p.dnsNS = append(p.dnsNS, n)
		}
	}
	for _, n := range d.Searches {
		if !s.dnsHasSearch(n) && !slices.Contains(p.dnsSearch, n) {
			p.dnsSearch = append(p.dnsSearch, n)
		}
	}
	for _, o := range d.Options {
		cur, found, same := s.dnsOption(o)
		switch {
		case !found:
			p.dnsOpts = append(p.dnsOpts, o)
		case !same:
			p.conflict("dnsConfig option %q: the pod has %s, the template sets %s", o.Name, optString(cur), optString(o.Value))
		}
	}
}

// checkMountVolumes: mounts must name a volume the pod will have; catching it here gives a message that names
// the template instead of the API server's later "not found" on the pod.
func (s *state) checkMountVolumes(in *instance, p *plan) {
	for i, m := range in.mounts {
		vol := in.mountVolumes[i]
		if s.volumes.has(vol) || hasKey(in.volumes, vol) {
			continue
		}
		for _, ta := range p.targets {
			if hasKey(ta.mounts, m.key) {
				p.conflict("volumeMount %q uses volume %q, which neither the pod nor the template has", m.key, vol)
				break
			}
		}
	}
}

func joinConflicts(c []string) string {
	out := c[0]
	for _, s := range c[1:] {
		out += "; " + s
	}
	return out
}

// targets returns the application containers that receive the template's mounts and env, in s.targetsBuf.
func (s *state) targets(t *Template, in *instance, p *plan) []targetAdds {
	if len(in.env)+len(in.mounts)+len(in.envFrom) == 0 {
		return nil
	}
	out := s.targetsBuf[:0]
	if n := max(len(s.apps), len(t.targets)); cap(out) < n {
		out = make([]targetAdds, 0, n) // room for any template's targets: allocated once per pod
	}
	if len(t.targets) == 0 {
		for i := range s.apps {
			if a := &s.apps[i]; !a.sidecar && !a.init {
				out = append(out, targetAdds{a: a})
			}
		}
	} else {
		for _, name := range t.targets {
			i := slices.IndexFunc(s.apps, func(a appContainer) bool { return a.name == name })
			if i < 0 {
				p.warnings = append(p.warnings, fmt.Sprintf("sidecar template %q: targetContainers names %q, which the pod does not have", t.Name, name))
				continue
			}
			out = append(out, targetAdds{a: &s.apps[i]})
		}
	}
	if len(out) == 0 {
		return nil
	}
	s.targetsBuf = out
	return out
}

func (s *state) hasAlias(ip string) bool {
	return slices.ContainsFunc(s.aliases, func(e *hostAliasEntry) bool { return e.ip == ip })
}

func (s *state) dnsHasNS(n string) bool {
	return (s.dns != nil && slices.Contains(s.dns.Nameservers, n)) || slices.Contains(s.dnsAddNS, n)
}

func (s *state) dnsHasSearch(n string) bool {
	return (s.dns != nil && slices.Contains(s.dns.Searches, n)) || slices.Contains(s.dnsAddSearch, n)
}

// dnsOption reports whether the pod (or an earlier template) has the option o names, and whether with o's value.
// A pod may name an option more than once: it has o when any of its entries equals o, so that a second pass
// finds what the first added; cur is the first entry of that name, for the conflict message.
func (s *state) dnsOption(o corev1.PodDNSConfigOption) (cur *string, found, same bool) {
	var opts [][]corev1.PodDNSConfigOption
	if s.dns != nil {
		opts = append(opts, s.dns.Options)
	}
	for _, list := range append(opts, s.dnsAddOpts) {
		for _, have := range list {
			if have.Name != o.Name {
				continue
			}
			if !found {
				cur, found = have.Value, true
			}
			if (have.Value == nil) == (o.Value == nil) && derefOr(have.Value, "") == derefOr(o.Value, "") {
				return cur, true, true
			}
		}
	}
	return cur, found, false
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func optString(p *string) string {
	if p == nil {
		return "no value"
	}
	return fmt.Sprintf("%q", *p)
}
