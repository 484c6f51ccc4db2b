package inject

import (
	"encoding/json"
	"slices"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// namedList tracks one named list of the pod (containers, init containers, volumes, image pull secrets): what
// the pod has, and what templates add in front of it and behind it. Names are searched, not mapped: a pod has
// a handful of each, and building a map per list for every admission cost more than the searches.
type namedList struct {
	present bool        // the pod has the array (absent or null means the patch creates it whole)
	own     []namedView // the pod's names (for volumes and pull secrets, the decoded view itself: not copied)
	before  []item
	after   []item
}

// has reports whether the pod has the name or a template added it.
func (l *namedList) has(name string) bool {
	return l.isOwn(name) || hasKey(l.before, name) || hasKey(l.after, name)
}

// isOwn reports whether the name is one of the pod's own (a template never adds a name the pod has).
func (l *namedList) isOwn(name string) bool {
	return slices.ContainsFunc(l.own, func(v namedView) bool { return v.Name == name })
}

func hasKey(items []item, key string) bool {
	return slices.ContainsFunc(items, func(it item) bool { return it.key == key })
}

// appendItems appends what a template adds to a list of the state. The first template's items become the list
// itself instead of a copy. This is the one place that relies on the invariant that a compiled template's
// arrays are never written: planned items are clipped (subsequence), so a later append copies instead of writing
// into the template's array, which every admission shares (TestInjectionNeverWritesATemplate).
func appendItems(list, items []item) []item {
	if len(list) == 0 {
		return slices.Clip(items)
	}
	return append(list, items...)
}

// subsequence returns the elements of all that keep accepts, in order; keep is called once per element, in
// order. While every element is kept — the usual case: nothing a template adds is in the pod yet — it is all
// itself (clipped, see appendItems), so a plan copies nothing.
func subsequence[T any](all []T, keep func(i int, e T) bool) []T {
	for i := range all {
		if !keep(i, all[i]) {
			out := make([]T, i, len(all)-1)
			copy(out, all[:i])
			for j := i + 1; j < len(all); j++ {
				if keep(j, all[j]) {
					out = append(out, all[j])
				}
			}
			return out
		}
	}
	return slices.Clip(all)
}

// appContainer is one of the pod's own containers, or init containers, and what templates add to it.
type appContainer struct {
	index                                     int
	name                                      string
	init                                      bool // an init container: receives only from templates that name it in targetContainers
	sidecar                                   bool // recorded as injected by a template: never an app container
	envPresent, mountsPresent, envFromPresent bool
	// What the container has: the pod's entries (the decoded view, not copied) and what templates added
	// (add*). Searched, not mapped: a container has a few dozen at most, and building maps for every container
	// of every pod costs more than searching them.
	env                           []namedView
	mounts                        []mountView
	envFrom                       []string         // canonical encodings of the pod's entries; computed on first use
	rawEnvFrom                    []jsontext.Value // the pod's entries, as they arrived
	addEnv, addMounts, addEnvFrom []item
}

// hasEnv reports whether the container has an env var of that name, its own or added by a template.
func (a *appContainer) hasEnv(name string) bool {
	return slices.ContainsFunc(a.env, func(e namedView) bool { return e.Name == name }) || hasKey(a.addEnv, name)
}

// hasMount reports whether the container has a volume mount at that path, its own or added by a template.
func (a *appContainer) hasMount(path string) bool {
	return slices.ContainsFunc(a.mounts, func(m mountView) bool { return m.MountPath == path }) || hasKey(a.addMounts, path)
}

// envFromKeys returns the canonical encodings of the container's envFrom entries, decoding the pod's on first
// use: most pods have envFrom, few templates add to it.
func (a *appContainer) envFromKeys() []string {
	if a.envFrom == nil {
		a.envFrom = make([]string, 0, len(a.rawEnvFrom))
		for _, raw := range a.rawEnvFrom {
			var e corev1.EnvFromSource
			if err := json.Unmarshal(raw, &e); err != nil {
				// Not an EnvFromSource: it cannot equal any entry a template adds.
				a.envFrom = append(a.envFrom, "\x00"+string(raw))
				continue
			}
			a.envFrom = append(a.envFrom, string(mustEncode(&e)))
		}
	}
	return a.envFrom
}

type boolSetting struct {
	field string
	pod   *bool  // the pod's explicit value
	set   *bool  // set by a template in this run
	by    string // that template's name
}

type hostAliasEntry struct {
	index        int // in the pod; -1 for an entry a template adds
	ip           string
	hostsPresent bool
	hosts        map[string]bool
	add          []string
}

// state is the pod as the templates applied so far leave it.
type state struct {
	limits                            Limits                               // with defaults
	pv                                *podValues                           // the pod's current per-pod values
	images                            ImageTolerance                       // what the platform may do to a sidecar's image
	patchBytes                        int                                  // what the committed templates add to the patch, counted as planSize counts it
	raw                               []byte                               // the pod as it arrived
	rawElems                          map[string]map[string]map[string]any // list -> name -> element, decoded on first use
	metaPresent, specPresent          bool
	labelsPresent, annotationsPresent bool
	labels, annotations               map[string]string // the pod's
	addLabels, addAnnotations         map[string]string // nil until a template adds some
	containers, inits, volumes, pulls namedList
	apps                              []appContainer // one per pod container, then per init container, by index; never appended to
	bools                             [4]boolSetting // shareProcessNamespace, hostNetwork, hostPID, hostIPC
	aliasesPresent                    bool
	aliases                           []*hostAliasEntry
	dnsPresent                        bool
	dns                               *corev1.PodDNSConfig // the pod's, read only
	dnsAddNS, dnsAddSearch            []string
	dnsAddOpts                        []corev1.PodDNSConfigOption
	entries                           []record // the record's entries (checked against the pod), then new ones
	statusRaw                         string
	statusPresent                     bool
	injected                          bool                  // a template added something in this run
	automountToken                    *bool                 // the pod's automountServiceAccountToken (serviceaccount.go)
	claimed                           map[templateKey]Added // names the record gave each template, before checking
	// targetsBuf is the array of plan.targets, reused from template to template: a plan's targets are read by
	// its plan and commit only, never after the next template is planned.
	targetsBuf []targetAdds
}

// init sets the state to the pod as it arrived. (The caller's state can then live on its stack.)
func (s *state) init(raw []byte, pod *podView) {
	s.raw = raw
	if m := pod.Metadata; m != nil {
		s.metaPresent = true
		s.labels, s.labelsPresent = m.Labels, m.Labels != nil
		s.annotations, s.annotationsPresent = m.Annotations, m.Annotations != nil
	}
	spec := pod.Spec
	if spec == nil {
		spec = &specView{}
	} else {
		s.specPresent = true
	}
	s.containers = namedList{present: spec.Containers != nil, own: containerViewNames(spec.Containers)}
	s.inits = namedList{present: spec.InitContainers != nil, own: containerViewNames(spec.InitContainers)}
	s.volumes = namedList{present: spec.Volumes != nil, own: spec.Volumes}
	s.pulls = namedList{present: spec.ImagePullSecrets != nil, own: spec.ImagePullSecrets}
	// All of them in one allocation: the pod's containers are known here and never change.
	// Init containers too: targetContainers may name them (a migration step that needs the template's secrets).
	s.apps = make([]appContainer, len(spec.Containers)+len(spec.InitContainers))
	for i, c := range spec.Containers {
		s.apps[i] = appContainer{index: i, name: c.Name, envPresent: c.Env != nil, mountsPresent: c.VolumeMounts != nil,
			envFromPresent: c.EnvFrom != nil, env: c.Env, mounts: c.VolumeMounts, rawEnvFrom: c.EnvFrom}
	}
	for i, c := range spec.InitContainers {
		s.apps[len(spec.Containers)+i] = appContainer{index: i, name: c.Name, init: true, envPresent: c.Env != nil,
			mountsPresent: c.VolumeMounts != nil, envFromPresent: c.EnvFrom != nil, env: c.Env, mounts: c.VolumeMounts,
			rawEnvFrom: c.EnvFrom}
	}
	s.bools = [4]boolSetting{
		{field: "shareProcessNamespace", pod: spec.ShareProcessNamespace},
		{field: "hostNetwork", pod: spec.HostNetwork},
		{field: "hostPID", pod: spec.HostPID},
		{field: "hostIPC", pod: spec.HostIPC},
	}
	s.aliasesPresent = spec.HostAliases != nil
	for i, h := range spec.HostAliases {
		e := &hostAliasEntry{index: i, ip: h.IP, hostsPresent: h.Hostnames != nil, hosts: map[string]bool{}}
		for _, n := range h.Hostnames {
			e.hosts[n] = true
		}
		s.aliases = append(s.aliases, e)
	}
	s.dns, s.dnsPresent = spec.DNSConfig, spec.DNSConfig != nil
	s.automountToken = spec.AutomountServiceAccountToken
}

func containerViewNames(cs []*containerView) []namedView {
	if len(cs) == 0 {
		return nil
	}
	out := make([]namedView, len(cs))
	for i, c := range cs {
		out[i].Name = c.Name
	}
	return out
}

// commit applies a plan to the state and returns what the template added, for its decision and the record.
func (s *state) commit(t *Template, in *instance, p *plan) *Added {
	added := addedNames(p)
	if t.containerPlace == v1alpha1.ContainerPlacementFirst {
		s.containers.before = appendItems(s.containers.before, p.containers)
	} else {
		s.containers.after = appendItems(s.containers.after, p.containers)
	}
	for i, c := range p.inits {
		if p.initFirst[i] {
			s.inits.before = append(s.inits.before, c)
		} else {
			s.inits.after = append(s.inits.after, c)
		}
	}
	s.volumes.after = appendItems(s.volumes.after, p.volumes)
	s.pulls.after = appendItems(s.pulls.after, p.pulls)
	for _, ta := range p.targets {
		ta.a.addEnv = appendItems(ta.a.addEnv, ta.env)
		ta.a.addMounts = appendItems(ta.a.addMounts, ta.mounts)
		ta.a.addEnvFrom = appendItems(ta.a.addEnvFrom, ta.envFrom)
	}
	if len(p.labels) > 0 && s.addLabels == nil {
		s.addLabels = make(map[string]string, len(p.labels))
	}
	for _, k := range p.labels {
		s.addLabels[k] = in.labelVals[k]
	}
	if len(p.annotations) > 0 && s.addAnnotations == nil {
		s.addAnnotations = make(map[string]string, len(p.annotations))
	}
	for _, k := range p.annotations {
		s.addAnnotations[k] = in.annotationVals[k]
	}
	for i, b := range p.bools {
		v := p.boolVals[i]
		s.bools[b].set, s.bools[b].by = &v, t.Name
	}
	for _, ip := range p.aliasOrder {
		i := slices.IndexFunc(s.aliases, func(e *hostAliasEntry) bool { return e.ip == ip })
		if i < 0 {
			s.aliases = append(s.aliases, &hostAliasEntry{index: -1, ip: ip, hosts: map[string]bool{}})
			i = len(s.aliases) - 1
		}
		for _, n := range p.aliasAdds[ip] {
			s.aliases[i].hosts[n] = true
			s.aliases[i].add = append(s.aliases[i].add, n)
		}
	}
	s.dnsAddNS = append(s.dnsAddNS, p.dnsNS...)
	s.dnsAddSearch = append(s.dnsAddSearch, p.dnsSearch...)
	s.dnsAddOpts = append(s.dnsAddOpts, p.dnsOpts...)
	s.patchBytes += p.bytes

	old := s.record(t.Namespace, t.Name)
	if old != nil {
		old.present = true
	}
	// The record keeps the old entry of a template that added nothing now, so its generation and hash still
	// say which version the pod runs (drift); anything added now is recorded with the current version.
	if old != nil && p.empty() {
		return &added
	}
	entry := StatusEntry{Namespace: t.Namespace, Name: t.Name, Generation: t.Generation, Hash: t.Hash,
		Revision: t.Revision, Added: added, Values: in.values}
	if old != nil {
		old.StatusEntry = entry
	} else {
		s.entries = append(s.entries, record{StatusEntry: entry, present: true})
	}
	s.injected = true
	return &added
}

// addedNames is what the template adds by name: the names the record attributes to it that the pod has, then
// the planned ones, per list, in one allocation (each list capped, so that appending to one copies it).
func addedNames(p *plan) Added {
	n := len(p.kept.Containers) + len(p.containers) + len(p.kept.InitContainers) + len(p.inits) +
		len(p.kept.Volumes) + len(p.volumes)
	if n == 0 {
		return Added{}
	}
	buf := make([]string, 0, n)
	take := func(kept []string, items []item) []string {
		if len(kept)+len(items) == 0 {
			return nil
		}
		start := len(buf)
		buf = append(buf, kept...)
		for _, it := range items {
			buf = append(buf, it.key)
		}
		return buf[start:len(buf):len(buf)]
	}
	return Added{Containers: take(p.kept.Containers, p.containers), InitContainers: take(p.kept.InitContainers, p.inits),
		Volumes: take(p.kept.Volumes, p.volumes)}
}
