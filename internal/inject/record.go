package inject

import (
	"cmp"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"

	kjson "sigs.k8s.io/json"
)

// Status is the JSON stored in the pod's sidecar.dev/status annotation.
type Status struct {
	Templates []StatusEntry `json:"templates"`
}

// StatusEntry records one injected template.
type StatusEntry struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	// Hash is a hash of the template's spec at injection time; a pod whose hash differs from the template's
	// current one runs an older version of it (drift).
	Hash string `json:"hash"`
	// Revision is the number of the template's revision the pod received; absent when not numbered (offline).
	Revision int64 `json:"revision,omitempty"`
	Added
}

// templateKey identifies a template as a map key, without building "namespace/name".
type templateKey struct{ namespace, name string }

// record is one entry of the pod's status record.
type record struct {
	StatusEntry
	present bool // the template was injected now or found already injected: the new record names it
	// rev is the revision the pod's elements were verified against: the template itself, or the earlier
	// revision the entry's hash names when the pod's elements are exactly what that one rendered.
	rev *Template
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

// recorded reports whether the pod's status record names the template.
func (s *state) recorded(t *Template) bool {
	return s.record(t.Namespace, t.Name) != nil
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
	// verifyWith returns e with only the names that t renders for this pod and the pod has as rendered, and
	// whether that is everything t renders; not ok when t cannot be rendered for the pod.
	verifyWith := func(t *Template, e StatusEntry) (v StatusEntry, all, ok bool) {
		var rendered instance
		in, err := t.instanceFor(pv, &rendered, s.limits.MaxRenderedBytes)
		if err != nil {
			return e, false, false // cannot be rendered for this pod, so nothing of it can be verified
		}
		e.Containers = verify(e.Containers, "containers", in.containers, &s.containers)
		e.InitContainers = verify(e.InitContainers, "initContainers", in.initContainers, &s.inits)
		e.Volumes = verify(e.Volumes, "volumes", in.volumes, &s.volumes)
		all = len(e.Containers) == len(in.containers) && len(e.InitContainers) == len(in.initContainers) &&
			len(e.Volumes) == len(in.volumes)
		return e, all, true
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
		if t.Err != nil {
			continue
		}
		// An entry of an earlier revision counts as that revision's only when the pod has everything it
		// rendered, exactly; else it is judged against the current revision, where a look-alike conflicts.
		rev := t
		if old := t.revisionByHash(e.Hash); old != nil {
			if v, all, ok := verifyWith(old, e); ok && all {
				s.entries = append(s.entries, record{StatusEntry: v, rev: old})
				continue
			}
		}
		if v, _, ok := verifyWith(rev, e); ok {
			s.entries = append(s.entries, record{StatusEntry: v, rev: rev})
		}
	}
	for i := range s.apps {
		a := &s.apps[i]
		for _, e := range s.entries {
			if (!a.init && slices.Contains(e.Containers, a.name)) || (a.init && slices.Contains(e.InitContainers, a.name)) {
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

// newStatus returns the record to write and whether it must be written: only when a template was injected in
// this run (a pod that receives nothing gets no patch at all), and then naming exactly the templates the pod
// now contains, which also corrects a forged or stale record.
func (s *state) newStatus() (string, bool) {
	if !s.injected {
		return "", false
	}
	enc := encodeStatus(s.entries)
	if s.statusPresent && enc == s.statusRaw {
		return "", false
	}
	return enc, true
}

// encodeStatus renders the record deterministically, naming the entries that are present: exactly what
// encoding/json writes for Status{Templates: those entries} (none written as an empty list: the record always
// has a list, never null). It is written by hand, straight into the string it returns, because every injected
// pod gets one and json.Marshal plus the conversion to a string allocated it three times over.
func encodeStatus(entries []record) string {
	n := len(`{"templates":[]}`)
	for i := range entries {
		e := &entries[i]
		if !e.present {
			continue
		}
		n += 100 + len(e.Namespace) + len(e.Name) + len(e.Hash)
		for _, names := range [][]string{e.Containers, e.InitContainers, e.Volumes} {
			n += 20
			for _, name := range names {
				n += len(name) + 3
			}
		}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(`{"templates":[`)
	first := true
	for i := range entries {
		e := &entries[i]
		if !e.present {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`{"namespace":`)
		writeJSONString(&b, e.Namespace)
		b.WriteString(`,"name":`)
		writeJSONString(&b, e.Name)
		b.WriteString(`,"generation":`)
		var num [20]byte
		b.Write(strconv.AppendInt(num[:0], e.Generation, 10))
		b.WriteString(`,"hash":`)
		writeJSONString(&b, e.Hash)
		if e.Revision != 0 {
			b.WriteString(`,"revision":`)
			b.Write(strconv.AppendInt(num[:0], e.Revision, 10))
		}
		writeJSONStrings(&b, `,"containers":`, e.Containers)
		writeJSONStrings(&b, `,"initContainers":`, e.InitContainers)
		writeJSONStrings(&b, `,"volumes":`, e.Volumes)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String()
}

// writeJSONStrings writes a list field tagged omitempty: nothing when the list is empty.
func writeJSONStrings(b *strings.Builder, field string, list []string) {
	if len(list) == 0 {
		return
	}
	b.WriteString(field)
	b.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, s)
	}
	b.WriteByte(']')
}

// writeJSONString writes s as encoding/json does. Names and hashes are plain ASCII, written as they are; any
// other string goes through encoding/json (HTML characters, control characters, non-ASCII, invalid UTF-8),
// so the output is always encoding/json's own.
func writeJSONString(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			b.Write(enc)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}
