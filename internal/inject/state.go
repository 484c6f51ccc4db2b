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
// the pod has, and what templates add in front of it and behind it.
type namedList struct {
	present bool              // the pod has the array (absent or null means the patch creates it whole)
	names   map[string]string // name -> "" for the pod's own, or the key of the template that added it
	before  []item
	after   []item
}

func newNamedList[T any](elems []T, present bool, name func(*T) string) *namedList {
	l := &namedList{present: present, names: make(map[string]string, len(elems))}
	for i := range elems {
		l.names[name(&elems[i])] = ""
	}
	return l
}

func (l *namedList) has(name string) bool { _, ok := l.names[name]; return ok }

// appContainer is one of the pod's own containers and what templates add to it.
type appContainer struct {
	index                                     int
	name                                      string
	sidecar                                   bool // recorded as injected by a template: never an app container
	envPresent, mountsPresent, envFromPresent bool
	// What the container has, the pod's and what templates added. Slices: a container has a few dozen at
	// most, and building maps for every container of every pod costs more than searching them.
	env, mounts                   []string
	envFrom                       []string         // canonical encodings; computed on first use
	rawEnvFrom                    []jsontext.Value // the pod's entries, as they arrived
	addEnv, addMounts, addEnvFrom []item
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
	addLabels, addAnnotations         map[string]string
	containers, inits, volumes, pulls *namedList
	apps                              []*appContainer
	bools                             []*boolSetting
	aliasesPresent                    bool
	aliases                           []*hostAliasEntry
	dnsPresent                        bool
	dns                               *corev1.PodDNSConfig // the pod's, read only
	dnsAddNS, dnsAddSearch            []string
	dnsAddOpts                        []corev1.PodDNSConfigOption
	owned                             map[string]*StatusEntry // the record's entries, checked against the pod
	entries                           []StatusEntry
	statusRaw                         string
	statusPresent                     bool
	injected                          bool             // a template added something in this run
	present                           map[string]bool  // templates injected now or found already injected
	claimed                           map[string]Added // names the record gave each template, before checking
}

func newState(raw []byte, pod *podView) *state {
	s := &state{raw: raw, owned: map[string]*StatusEntry{}, present: map[string]bool{}, claimed: map[string]Added{}, addLabels: map[string]string{}, addAnnotations: map[string]string{}}
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
	cname := func(c **containerView) string { return (*c).Name }
	s.containers = newNamedList(spec.Containers, spec.Containers != nil, cname)
	s.inits = newNamedList(spec.InitContainers, spec.InitContainers != nil, cname)
	s.volumes = newNamedList(spec.Volumes, spec.Volumes != nil, func(v *namedView) string { return v.Name })
	s.pulls = newNamedList(spec.ImagePullSecrets, spec.ImagePullSecrets != nil, func(v *namedView) string { return v.Name })
	for i := range spec.Containers {
		c := spec.Containers[i]
		a := &appContainer{index: i, name: c.Name, envPresent: c.Env != nil, mountsPresent: c.VolumeMounts != nil,
			envFromPresent: c.EnvFrom != nil, rawEnvFrom: c.EnvFrom}
		a.env = make([]string, len(c.Env))
		for i, e := range c.Env {
			a.env[i] = e.Name
		}
		a.mounts = make([]string, len(c.VolumeMounts))
		for i, m := range c.VolumeMounts {
			a.mounts[i] = m.MountPath
		}
		s.apps = append(s.apps, a)
	}
	s.bools = []*boolSetting{
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
	return s
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
		key := e.Namespace + "/" + e.Name
		t := known(e.Namespace, e.Name)
		if _, dup := s.owned[key]; t == nil || dup {
			continue
		}
		s.claimed[key] = Added{Containers: slices.Clone(e.Containers), InitContainers: slices.Clone(e.InitContainers),
			Volumes: slices.Clone(e.Volumes)}
		in, msg := t.instanceFor(pv)
		if t.Err != nil || msg != "" {
			continue // cannot be rendered for this pod, so nothing of it can be verified
		}
		e.Containers = verify(e.Containers, "containers", in.containers, s.containers)
		e.InitContainers = verify(e.InitContainers, "initContainers", in.initContainers, s.inits)
		e.Volumes = verify(e.Volumes, "volumes", in.volumes, s.volumes)
		s.entries = append(s.entries, e)
		s.owned[key] = nil // placeholder: pointers are taken once the slice stops growing
	}
	for i := range s.entries {
		s.owned[s.entries[i].Namespace+"/"+s.entries[i].Name] = &s.entries[i]
	}
	for _, a := range s.apps {
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
	c := s.claimed[t.Key()]
	claimed := map[string][]string{"containers": c.Containers, "initContainers": c.InitContainers, "volumes": c.Volumes}[list]
	if !slices.Contains(claimed, name) || s.containers.names[name] != "" && list == "containers" {
		return ""
	}
	return " (its sidecar.dev/status names this template for it, but it is not what the template injects; " +
		"remove it from the pod to have the template inject its own)"
}

// plan is what one template would add to the pod in its current state.
type plan struct {
	t                    *Template
	containers           []item
	inits                []item
	initNative           []bool
	volumes, pulls       []item
	kept                 Added // names the record attributes to this template that the pod has
	env, mounts, envFrom map[*appContainer][]item
	labels, annotations  []string
	in                   *instance
	bools                []*boolSetting
	boolVals             []bool
	aliasAdds            map[string][]string // ip -> hostnames to add
	aliasOrder           []string
	dnsNS, dnsSearch     []string
	dnsOpts              []corev1.PodDNSConfigOption
	warnings             []string
}

func (p *plan) empty() bool {
	n := len(p.containers) + len(p.inits) + len(p.volumes) + len(p.pulls) + len(p.labels) + len(p.annotations) +
		len(p.bools) + len(p.aliasOrder) + len(p.dnsNS) + len(p.dnsSearch) + len(p.dnsOpts)
	for _, m := range []map[*appContainer][]item{p.env, p.mounts, p.envFrom} {
		for _, items := range m {
			n += len(items)
		}
	}
	return n == 0
}

// plan decides what the template adds, or returns the conflicts that prevent it, without changing the state.
func (s *state) plan(t *Template, in *instance) (*plan, string) {
	p := &plan{t: t, in: in, env: map[*appContainer][]item{}, mounts: map[*appContainer][]item{},
		envFrom: map[*appContainer][]item{}, aliasAdds: map[string][]string{}}
	var conflicts []string
	var owned Added // names the record attributes to this template (already checked against the pod)
	if e := s.owned[t.Key()]; e != nil {
		owned = e.Added
	}

	for _, c := range in.containers {
		switch {
		case s.containers.has(c.key) && s.containers.names[c.key] == "" && slices.Contains(owned.Containers, c.key):
			p.kept.Containers = append(p.kept.Containers, c.key)
		case s.containers.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("container name %q already exists in pod", c.key)+s.unverified(t, "containers", c.key))
		case s.inits.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("container name %q already exists in pod as an init container", c.key))
		default:
			p.containers = append(p.containers, c)
		}
	}
	for i, c := range in.initContainers {
		switch {
		case s.inits.has(c.key) && s.inits.names[c.key] == "" && slices.Contains(owned.InitContainers, c.key):
			p.kept.InitContainers = append(p.kept.InitContainers, c.key)
		case s.inits.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("init container name %q already exists in pod", c.key)+s.unverified(t, "initContainers", c.key))
		case s.containers.has(c.key):
			conflicts = append(conflicts, fmt.Sprintf("init container name %q already exists in pod as a container", c.key))
		default:
			p.inits = append(p.inits, c)
			p.initNative = append(p.initNative, in.native[i])
		}
	}
	for _, v := range in.volumes {
		switch {
		case s.volumes.has(v.key) && s.volumes.names[v.key] == "" && slices.Contains(owned.Volumes, v.key):
			p.kept.Volumes = append(p.kept.Volumes, v.key)
		case s.volumes.has(v.key):
			conflicts = append(conflicts, fmt.Sprintf("volume name %q already exists in pod", v.key)+s.unverified(t, "volumes", v.key))
		default:
			p.volumes = append(p.volumes, v)
		}
	}
	for _, ps := range in.pullSecrets {
		if !s.pulls.has(ps.key) {
			p.pulls = append(p.pulls, ps)
		}
	}

	for _, tgt := range s.targets(t, p) {
		for _, e := range in.env {
			if !slices.Contains(tgt.env, e.key) {
				p.env[tgt] = append(p.env[tgt], e)
			}
		}
		for _, m := range in.mounts {
			if !slices.Contains(tgt.mounts, m.key) {
				p.mounts[tgt] = append(p.mounts[tgt], m)
			}
		}
		if len(in.envFrom) > 0 {
			have := tgt.envFromKeys()
			for _, e := range in.envFrom {
				if !slices.Contains(have, e.key) {
					p.envFrom[tgt] = append(p.envFrom[tgt], e)
				}
			}
		}
	}

	for _, k := range in.labels {
		if _, has := s.labels[k]; !has {
			if _, added := s.addLabels[k]; !added {
				p.labels = append(p.labels, k)
			}
		}
	}
	for _, k := range in.annotations {
		if _, has := s.annotations[k]; !has {
			if _, added := s.addAnnotations[k]; !added {
				p.annotations = append(p.annotations, k)
			}
		}
	}

	for i, want := range []*bool{in.share, in.hostNetwork, in.hostPID, in.hostIPC} {
		if want == nil {
			continue
		}
		b := s.bools[i]
		switch {
		case b.pod != nil && *b.pod != *want:
			conflicts = append(conflicts, fmt.Sprintf("%s: the pod sets %t, the template sets %t", b.field, *b.pod, *want))
		case b.set != nil && *b.set != *want:
			conflicts = append(conflicts, fmt.Sprintf("%s: sidecar template %q sets %t, this template sets %t", b.field, b.by, *b.set, *want))
		case b.pod == nil && b.set == nil:
			p.bools, p.boolVals = append(p.bools, b), append(p.boolVals, *want)
		}
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
		if s.volumes.has(vol) || slices.ContainsFunc(in.volumes, func(v item) bool { return v.key == vol }) {
			continue
		}
		for _, items := range p.mounts {
			if slices.ContainsFunc(items, func(it item) bool { return it.key == m.key }) {
				conflicts = append(conflicts, fmt.Sprintf("volumeMount %q uses volume %q, which neither the pod nor the template has", m.key, vol))
				break
			}
		}
	}

	if len(conflicts) > 0 {
		return nil, joinConflicts(conflicts)
	}
	return p, ""
}

func joinConflicts(c []string) string {
	out := c[0]
	for _, s := range c[1:] {
		out += "; " + s
	}
	return out
}

// targets returns the application containers that receive the template's mounts and env.
func (s *state) targets(t *Template, p *plan) []*appContainer {
	if len(p.in.env)+len(p.in.mounts)+len(p.in.envFrom) == 0 {
		return nil
	}
	if len(t.targets) == 0 {
		var out []*appContainer
		for _, a := range s.apps {
			if !a.sidecar {
				out = append(out, a)
			}
		}
		return out
	}
	var out []*appContainer
	for _, name := range t.targets {
		i := slices.IndexFunc(s.apps, func(a *appContainer) bool { return a.name == name })
		if i < 0 {
			p.warnings = append(p.warnings, fmt.Sprintf("sidecar template %q: targetContainers names %q, which the pod does not have", t.Name, name))
			continue
		}
		out = append(out, s.apps[i])
	}
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
func (s *state) commit(t *Template, p *plan) *Added {
	key := t.Key()
	added := p.kept
	for _, c := range p.containers {
		s.containers.names[c.key] = key
		if t.containerPlace == v1alpha1.ContainerPlacementFirst {
			s.containers.before = append(s.containers.before, c)
		} else {
			s.containers.after = append(s.containers.after, c)
		}
		added.Containers = append(added.Containers, c.key)
	}
	for i, c := range p.inits {
		s.inits.names[c.key] = key
		first := t.initPlace == v1alpha1.InitContainerPlacementFirst ||
			(t.initPlace == v1alpha1.InitContainerPlacementAuto && p.initNative[i])
		if first {
			s.inits.before = append(s.inits.before, c)
		} else {
			s.inits.after = append(s.inits.after, c)
		}
		added.InitContainers = append(added.InitContainers, c.key)
	}
	for _, v := range p.volumes {
		s.volumes.names[v.key] = key
		s.volumes.after = append(s.volumes.after, v)
		added.Volumes = append(added.Volumes, v.key)
	}
	for _, ps := range p.pulls {
		s.pulls.names[ps.key] = key
		s.pulls.after = append(s.pulls.after, ps)
	}
	for a, items := range p.env {
		for _, e := range items {
			a.env = append(a.env, e.key)
		}
		a.addEnv = append(a.addEnv, items...)
	}
	for a, items := range p.mounts {
		for _, m := range items {
			a.mounts = append(a.mounts, m.key)
		}
		a.addMounts = append(a.addMounts, items...)
	}
	for a, items := range p.envFrom {
		a.envFrom = a.envFromKeys()
		for _, e := range items {
			a.envFrom = append(a.envFrom, e.key)
		}
		a.addEnvFrom = append(a.addEnvFrom, items...)
	}
	for _, k := range p.labels {
		s.addLabels[k] = p.in.labelVals[k]
	}
	for _, k := range p.annotations {
		s.addAnnotations[k] = p.in.annotationVals[k]
	}
	for i, b := range p.bools {
		v := p.boolVals[i]
		b.set, b.by = &v, t.Name
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

	s.present[key] = true
	// The record keeps the old entry of a template that added nothing now, so its generation and hash still
	// say which version the pod runs (drift); anything added now is recorded with the current version.
	if old := s.owned[key]; old != nil && p.empty() {
		return &added
	}
	entry := StatusEntry{Namespace: t.Namespace, Name: t.Name, Generation: t.Generation, Hash: t.Hash, Added: added}
	if old := s.owned[key]; old != nil {
		*old = entry
	} else {
		s.entries = append(s.entries, entry)
		for i := range s.entries {
			s.owned[s.entries[i].Namespace+"/"+s.entries[i].Name] = &s.entries[i]
		}
	}
	s.injected = true
	return &added
}
