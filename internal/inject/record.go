package inject

import (
	"encoding/json"
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
	// Values are the per-pod values the template was rendered with: each expression it uses ("pod.labels.app",
	// "params.level") and its value then, the namespace excepted (verification takes it from the request).
	// Verification and later passes render with these, not with the pod's current labels and annotations, so
	// that another webhook, another template or a later edit changing them does not make this injector's own
	// sidecar a conflict. The pod's author controls every one of these inputs anyway: a forged value can only
	// verify a sidecar that the author could have had rendered by setting it. A record without values (written
	// by an earlier version) is verified with the pod's current values.
	Values map[string]string `json:"values,omitempty"`
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

// loadStatus reads the pod's record and keeps of it only what can be verified (verifyEntry): entries for
// templates that exist and serve this pod's namespace (known), and of those only the names the template adds and
// the pod contains as the template renders them. Everything else is dropped, so a forged record can neither hide
// a sidecar the pod should get nor make an application container pass for a sidecar. A record that is not valid
// JSON is treated as empty. The record alone never makes a template count as injected.
func (s *state) loadStatus(raw string, known func(namespace, name string) *Template) {
	s.statusRaw, s.statusPresent = raw, true
	var st Status
	if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(raw), &st); err != nil {
		return
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
		// An entry of an earlier revision counts as that revision's only when the pod has everything it
		// rendered, exactly; else it is judged against the current revision, where a look-alike conflicts.
		if old := t.revisionByHash(e.Hash); old != nil {
			if v, ok := s.verifyEntry(old, e); ok && verifiesWhole(old, v) {
				s.entries = append(s.entries, record{StatusEntry: v, rev: old})
				continue
			}
		}
		if verified, ok := s.verifyEntry(t, e); ok {
			s.entries = append(s.entries, record{StatusEntry: verified, rev: t})
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

// verifyEntry is the one check of a record entry against the pod: it returns the entry keeping only the names
// that t (compiled; an earlier revision of the template may be passed) adds, that the pod has, and whose element
// in the pod is what t renders with the entry's recorded values (rendersAs). ok is false when t cannot be
// rendered for this pod (invalid, a missing parameter, a limit): then nothing of the entry can be verified.
func (s *state) verifyEntry(t *Template, e StatusEntry) (StatusEntry, bool) {
	if t.Err != nil {
		return StatusEntry{}, false
	}
	in, err := t.instanceFor(s.pv, e.Values, s.limits.MaxRenderedBytes)
	if err != nil {
		return StatusEntry{}, false
	}
	verify := func(recorded []string, list string, items []item, l *namedList) []string {
		var out []string
		for _, n := range recorded {
			i := slices.IndexFunc(items, func(it item) bool { return it.key == n })
			if i >= 0 && l.has(n) && !slices.Contains(out, n) && s.rendersAs(list, n, items[i]) {
				out = append(out, n)
			}
		}
		return out
	}
	e.Containers = verify(e.Containers, "containers", in.containers, &s.containers)
	e.InitContainers = verify(e.InitContainers, "initContainers", in.initContainers, &s.inits)
	e.Volumes = verify(e.Volumes, "volumes", in.volumes, &s.volumes)
	// Later passes render with what this rendering used: the recorded values, completed with current ones for
	// expressions the record lacks, minus any the template no longer uses. When the template adds sidecars or
	// volumes and none of them is in the pod as these values render it, the values vouch for nothing: what the
	// template adds now is rendered from the pod itself, not from a forged or stale record.
	e.Values = in.values
	if len(in.containers)+len(in.initContainers)+len(in.volumes) > 0 && len(e.Containers)+len(e.InitContainers)+len(e.Volumes) == 0 {
		e.Values = nil
	}
	return e, true
}

// verifiesWhole reports whether v, an entry verified against t, holds every name t adds: the pod has all of it
// as t renders it (a native-sidecar container of a pod that runs to completion counts as an init container).
func verifiesWhole(t *Template, v StatusEntry) bool {
	return len(v.Containers)+len(v.InitContainers)+len(v.Volumes) ==
		len(t.names.Containers)+len(t.names.InitContainers)+len(t.names.Volumes)
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
		n += 100 + len(e.Namespace) + len(e.Name) + len(e.Hash) + valuesSize(e.Values)
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
		writeJSONValues(&b, e.Values)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String()
}

// writeJSONValues writes the values field (tagged omitempty) with its keys sorted, as encoding/json does.
func writeJSONValues(b *strings.Builder, values map[string]string) {
	if len(values) == 0 {
		return
	}
	b.WriteString(`,"values":{`)
	var buf [16]string // a template uses a few per-pod values: sorted on the stack
	keys := buf[:0]
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, k)
		b.WriteByte(':')
		writeJSONString(b, values[k])
	}
	b.WriteByte('}')
}

// valuesSize is about what the values take in the record (and so in the patch): keys, values and quoting.
func valuesSize(values map[string]string) int {
	if len(values) == 0 {
		return 0
	}
	n := len(`,"values":{}`)
	for k, v := range values {
		n += len(k) + len(v) + 6
	}
	return n
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
