package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

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
// itself instead of a copy: planned items are never written to, and the clipped capacity makes a later append
// copy instead of writing into the template's (or the plan's) array.
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

// appContainer is one of the pod's own containers and what templates add to it.
type appContainer struct {
	index                                     int
	name                                      string
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
	raw                               []byte                               // the pod as it arrived
	rawElems                          map[string]map[string]map[string]any // list -> name -> element, decoded on first use
	metaPresent, specPresent          bool
	labelsPresent, annotationsPresent bool
	labels, annotations               map[string]string // the pod's
	addLabels, addAnnotations         map[string]string // nil until a template adds some
	containers, inits, volumes, pulls namedList
	apps                              []appContainer // one per pod container, by index; never appended to
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
	claimed                           map[templateKey]Added // names the record gave each template, before checking
	// targetsBuf is the array of plan.targets, reused from template to template: a plan's targets are read by
	// its plan and commit only, never after the next template is planned.
	targetsBuf []targetAdds
}

// templateKey identifies a template as a map key, without building "namespace/name".
type templateKey struct{ namespace, name string }

// record is one entry of the pod's status record.
type record struct {
	StatusEntry
	present bool // the template was injected now or found already injected: the new record names it
}

// record returns the record's entry for the template, nil when there is none. A pod's record names a few
// templates: searching it costs less than keeping a map. The pointer is valid until entries grows.
func (s *state) record(namespace, name string) *record {
	for i := range s.entries {
		if e := &s.entries[i]; e.Namespace == namespace && e.Name == name {
			return e
		}
	}
	return nil
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
	s.apps = make([]appContainer, len(spec.Containers))
	for i, c := range spec.Containers {
		s.apps[i] = appContainer{index: i, name: c.Name, envPresent: c.Env != nil, mountsPresent: c.VolumeMounts != nil,
			envFromPresent: c.EnvFrom != nil, env: c.Env, mounts: c.VolumeMounts, rawEnvFrom: c.EnvFrom}
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

// loadStatus reads the pod's record and keeps of it only what can be verified: entries for templates that exist
// and serve this pod's namespace (known), and of those only the names the template adds and the pod contains.
// Everything else is dropped, so a forged record can neither hide a sidecar the pod should get nor make an
// application container pass for a sidecar. A record that is not valid JSON is treated as empty. The record
// alone never makes a template count as injected.
func (s *state) loadStatus(raw string, known func(namespace, name string) *Template, pv *podValues) {
	s.statusRaw, s.statusPresent = raw, true
	var st Status
	if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(raw), &st); err != nil {
		return
	}
	// A recorded name counts only if the template adds it, the pod has it, and the pod's element is what the
	// template renders for this pod: a record copied from another pod cannot vouch for a look-alike.
	verify := func(recorded []string, list string, rendered []item, l *namedList) []string {
		var out []string
		for _, n := range recorded {
			i := slices.IndexFunc(rendered, func(it item) bool { return it.key == n })
			if i >= 0 && l.has(n) && !slices.Contains(out, n) && s.rendersAs(list, n, rendered[i]) {
				out = append(out, n)
			}
		}
		return out
	}
	for _, e := range st.Templates {
		t := known(e.Namespace, e.Name)
		if t == nil || s.record(e.Namespace, e.Name) != nil {
			continue
		}
		if s.claimed == nil {
			s.claimed = map[templateKey]Added{}
		}
		s.claimed[templateKey{e.Namespace, e.Name}] = Added{Containers: slices.Clone(e.Containers),
			InitContainers: slices.Clone(e.InitContainers), Volumes: slices.Clone(e.Volumes)}
		var rendered instance
		in, msg := t.instanceFor(pv, &rendered)
		if t.Err != nil || msg != "" {
			continue // cannot be rendered for this pod, so nothing of it can be verified
		}
		e.Containers = verify(e.Containers, "containers", in.containers, &s.containers)
		e.InitContainers = verify(e.InitContainers, "initContainers", in.initContainers, &s.inits)
		e.Volumes = verify(e.Volumes, "volumes", in.volumes, &s.volumes)
		s.entries = append(s.entries, record{StatusEntry: e})
	}
	for i := range s.apps {
		a := &s.apps[i]
		for _, e := range s.entries {
			if slices.Contains(e.Containers, a.name) {
				a.sidecar = true
			}
		}
	}
}

// rendersAs reports whether the pod's element of list named name contains what the template renders (it). The
// pod's element may have more (API server defaults, other webhooks' additions) but not less or other values.
// imagePullPolicy and resources are not compared, and the image is compared as sameImage does: registry-mirror,
// digest-pinning and resource webhooks rewrite them, and such a rewrite must not turn the sidecar into a conflict
// when the webhook is invoked again.
func (s *state) rendersAs(list, name string, it item) bool {
	if s.rawElems == nil {
		var pod struct {
			Spec struct {
				Containers     []map[string]any `json:"containers"`
				InitContainers []map[string]any `json:"initContainers"`
				Volumes        []map[string]any `json:"volumes"`
			} `json:"spec"`
		}
		_ = kjson.UnmarshalCaseSensitivePreserveInts(s.raw, &pod) // read once already: it decodes
		s.rawElems = map[string]map[string]map[string]any{}
		for l, elems := range map[string][]map[string]any{"containers": pod.Spec.Containers,
			"initContainers": pod.Spec.InitContainers, "volumes": pod.Spec.Volumes} {
			s.rawElems[l] = map[string]map[string]any{}
			for _, e := range elems {
				if n, ok := e["name"].(string); ok {
					s.rawElems[l][n] = e
				}
			}
		}
	}
	have, ok := s.rawElems[list][name]
	if !ok {
		return false
	}
	var want map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(it.raw, &want); err != nil {
		return false
	}
	if list != "volumes" {
		wantImage, _ := want["image"].(string)
		haveImage, _ := have["image"].(string)
		if !sameImage(wantImage, haveImage) {
			return false
		}
		delete(want, "image")
		delete(want, "imagePullPolicy")
		delete(want, "resources")
	}
	return contains(want, have)
}

// sameImage reports whether have is the image want, as other webhooks may have rewritten it: the same repository
// or one under a mirror's prefix (mirror.example/team/fluent/fluent-bit for fluent/fluent-bit), and the same tag
// (none meaning latest) or digest, or a digest where want has a tag (a webhook pinned it).
func sameImage(want, have string) bool {
	wRepo, wTag, wDigest := splitImage(want)
	hRepo, hTag, hDigest := splitImage(have)
	if hRepo != wRepo && !strings.HasSuffix(hRepo, "/"+wRepo) {
		return false
	}
	switch {
	case wDigest != "":
		return hDigest == wDigest
	case hDigest != "":
		return true
	}
	return cmp.Or(hTag, "latest") == cmp.Or(wTag, "latest")
}

func splitImage(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// contains reports whether have holds everything want holds: every key of an object with a value it contains;
// for a list of objects, every element contained in some element of have; for other lists, the same list.
func contains(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok || !contains(wv, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return false
		}
		objects := len(w) > 0
		for _, e := range w {
			if _, isObj := e.(map[string]any); !isObj {
				objects = false
			}
		}
		if !objects {
			return reflect.DeepEqual(w, h) || (len(w) == 0 && len(h) == 0)
		}
		for _, we := range w {
			if !slices.ContainsFunc(h, func(he any) bool { return contains(we, he) }) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(want, have)
}

// unverified explains a conflict on a name that the pod's record attributes to this template: the pod's element
// is not what the template injects (a pod re-created from an exported manifest after the template changed, or a
// copied record). Empty when the record did not claim the name.
func (s *state) unverified(t *Template, list, name string) string {
	c := s.claimed[templateKey{t.Namespace, t.Name}]
	var claimed []string
	switch list {
	case "containers":
		claimed = c.Containers
	case "initContainers":
		claimed = c.InitContainers
	case "volumes":
		claimed = c.Volumes
	}
	// A container a template added in this run is not the pod's: the record cannot have vouched for it.
	addedNow := list == "containers" && s.containers.has(name) && !s.containers.isOwn(name)
	if !slices.Contains(claimed, name) || addedNow {
		return ""
	}
	return " (its sidecar.dev/status names this template for it, but it is not what the template injects; " +
		"remove it from the pod to have the template inject its own)"
}

// plan is what one template would add to the pod in its current state. It does not point to the template's
// instance (plan and commit take it beside the plan): the caller's plan and instance then stay on its stack.
type plan struct {
	containers          []item
	inits               []item
	initNative          []bool
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
// conflicts that prevent it, without changing the state. The lists of what it adds share the instance's arrays
// when everything in them is added (subsequence).
func (s *state) plan(t *Template, in *instance, p *plan) string {
	var conflicts []string
	var owned Added // names the record attributes to this template (already checked against the pod)
	if e := s.record(t.Namespace, t.Name); e != nil {
		owned = e.Added
	}

	p.containers = subsequence(in.containers, func(_ int, c item) bool {
		switch {
		case s.containers.isOwn(c.key) && slices.Contains(owned.Containers, c.key):
			p.kept.Containers = append(p.kept.Containers, c.key)
		case s.containers.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("container name %q already exists in pod", c.key)+s.unverified(t, "containers", c.key))
		case s.inits.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("container name %q already exists in pod as an init container", c.key))
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
			conflicts = append(conflicts, fmt.Sprintf("init container name %q already exists in pod", c.key)+s.unverified(t, "initContainers", c.key))
		case s.containers.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("init container name %q already exists in pod as a container", c.key))
		default:
			p.initNative = append(p.initNative, in.native[i])
			return true
		}
		return false
	})
	p.volumes = subsequence(in.volumes, func(_ int, v item) bool {
		switch {
		case s.volumes.isOwn(v.key) && slices.Contains(owned.Volumes, v.key):
			p.kept.Volumes = append(p.kept.Volumes, v.key)
		case s.volumes.has(v.key):
			conflicts = append(conflicts, fmt.Sprintf("volume name %q already exists in pod", v.key)+s.unverified(t, "volumes", v.key))
		default:
			return true
		}
		return false
	})
	p.pulls = subsequence(in.pullSecrets, func(_ int, ps item) bool { return !s.pulls.has(ps.key) })

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

	for i, want := range []*bool{in.share, in.hostNetwork, in.hostPID, in.hostIPC} {
		if want == nil {
			continue
		}
		b := &s.bools[i]
		switch {
		case b.pod != nil && *b.pod != *want:
			conflicts = append(conflicts, fmt.Sprintf("%s: the pod sets %t, the template sets %t", b.field, *b.pod, *want))
		case b.set != nil && *b.set != *want:
			conflicts = append(conflicts, fmt.Sprintf("%s: sidecar template %q sets %t, this template sets %t", b.field, b.by, *b.set, *want))
		case b.pod == nil && b.set == nil:
			p.bools, p.boolVals = append(p.bools, i), append(p.boolVals, *want)
		}
	}

	if len(in.hostAliases) > 0 {
		p.aliasAdds = map[string][]string{}
	}
	for _, h := range in.hostAliases {
		have := map[string]bool{}
		for _, e := range s.aliases {
			if e.ip == h.IP {
				have = e.hosts
			}
		}
		for _, n := range h.Hostnames {
			if !have[n] && !slices.Contains(p.aliasAdds[h.IP], n) {
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

	if d := in.dnsConfig; d != nil {
		for _, n := range d.Nameservers {
			if !s.dnsHasNS(n) {
				p.dnsNS = append(p.dnsNS, n)
			}
		}
		for _, n := range d.Searches {
			if !s.dnsHasSearch(n) {
				p.dnsSearch = append(p.dnsSearch, n)
			}
		}
		for _, o := range d.Options {
			cur, found := s.dnsOption(o.Name)
			switch {
			case !found:
				p.dnsOpts = append(p.dnsOpts, o)
			case derefOr(cur, "") != derefOr(o.Value, "") || (cur == nil) != (o.Value == nil):
				conflicts = append(conflicts, fmt.Sprintf("dnsConfig option %q: the pod has %s, the template sets %s",
					o.Name, optString(cur), optString(o.Value)))
			}
		}
	}

	// Mounts must name a volume the pod will have; catching it here gives a message that names the template
	// instead of the API server's later "not found" on the pod.
	for i, m := range in.mounts {
		vol := in.mountVolumes[i]
		if s.volumes.has(vol) || hasKey(in.volumes, vol) {
			continue
		}
		for _, ta := range p.targets {
			if hasKey(ta.mounts, m.key) {
				conflicts = append(conflicts, fmt.Sprintf("volumeMount %q uses volume %q, which neither the pod nor the template has", m.key, vol))
				break
			}
		}
	}

	if len(conflicts) > 0 {
		return joinConflicts(conflicts)
	}
	return ""
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
			if a := &s.apps[i]; !a.sidecar {
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

func (s *state) dnsOption(name string) (*string, bool) {
	if s.dns != nil {
		for _, o := range s.dns.Options {
			if o.Name == name {
				return o.Value, true
			}
		}
	}
	for _, o := range s.dnsAddOpts {
		if o.Name == name {
			return o.Value, true
		}
	}
	return nil, false
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

// commit applies a plan to the state and returns what the template added, for its decision and the record.
func (s *state) commit(t *Template, in *instance, p *plan) *Added {
	added := Added{
		Containers:     appendKeys(p.kept.Containers, p.containers),
		InitContainers: appendKeys(p.kept.InitContainers, p.inits),
		Volumes:        appendKeys(p.kept.Volumes, p.volumes),
	}
	if t.containerPlace == v1alpha1.ContainerPlacementFirst {
		s.containers.before = appendItems(s.containers.before, p.containers)
	} else {
		s.containers.after = appendItems(s.containers.after, p.containers)
	}
	for i, c := range p.inits {
		first := t.initPlace == v1alpha1.InitContainerPlacementFirst ||
			(t.initPlace == v1alpha1.InitContainerPlacementAuto && p.initNative[i])
		if first {
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

	old := s.record(t.Namespace, t.Name)
	if old != nil {
		old.present = true
	}
	// The record keeps the old entry of a template that added nothing now, so its generation and hash still
	// say which version the pod runs (drift); anything added now is recorded with the current version.
	if old != nil && p.empty() {
		return &added
	}
	entry := StatusEntry{Namespace: t.Namespace, Name: t.Name, Generation: t.Generation, Hash: t.Hash, Added: added}
	if old != nil {
		old.StatusEntry = entry
	} else {
		s.entries = append(s.entries, record{StatusEntry: entry, present: true})
	}
	s.injected = true
	return &added
}

// appendKeys appends the keys of items to keys, growing it once.
func appendKeys(keys []string, items []item) []string {
	if len(items) == 0 {
		return keys
	}
	keys = slices.Grow(keys, len(items))
	for _, it := range items {
		keys = append(keys, it.key)
	}
	return keys
}
