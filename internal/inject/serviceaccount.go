package inject

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The API server's ServiceAccount admission plugin (k8s.io/kubernetes plugin/pkg/admission/serviceaccount,
// mountServiceAccountToken) mounts the pod's API token into every container and init container that has no
// mount at serviceAccountTokenPath, unless the pod opts out (automountServiceAccountToken). It runs before the
// webhooks, so the pod this engine reads already shows it; and once a webhook has changed the pod, the API
// server runs it again, and it mounts the token into the containers the templates added. The pod then differs
// from this webhook's answer, and a webhook with reinvocationPolicy IfNeeded is called a second time, for an
// empty patch: about as much work for the API server as the first call. Adding that mount here, as the plugin
// would, leaves the plugin nothing to do when it runs again: one call per pod, and the same stored pod.

// tokenVolumePrefix is how the plugin names the token volume (ServiceAccountVolumeName + "-"); it mounts the
// pod's first volume with this prefix.
const tokenVolumePrefix = "kube-api-access-"

// mirrorPodAnnotation marks a kubelet's mirror pod, whose spec the plugin never changes.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// serviceAccountTokenVolume returns the volume the plugin mounts into the pod's containers, or "" when the pod
// does not show that the plugin mounts the token: the pod opts out, is a mirror pod, has no volume named as
// the plugin names it, or has a container without a mount at the token path (the plugin gives one to each).
// The ServiceAccount's own automountServiceAccountToken is not in the pod: a pod whose containers already
// mount a kube-api-access-* volume at that path is taken to automount it (the plugin mounted it, or the pod
// was copied from one it mounted).
func (s *state) serviceAccountTokenVolume() string {
	if s.automountToken != nil && !*s.automountToken || len(s.apps) == 0 {
		return ""
	}
	if _, mirror := s.annotations[mirrorPodAnnotation]; mirror {
		return ""
	}
	i := slices.IndexFunc(s.volumes.own, func(v namedView) bool { return strings.HasPrefix(v.Name, tokenVolumePrefix) })
	if i < 0 {
		return ""
	}
	for j := range s.apps {
		if !slices.ContainsFunc(s.apps[j].mounts, func(m mountView) bool { return m.MountPath == serviceAccountTokenPath }) {
			return ""
		}
	}
	return s.volumes.own[i].Name
}

// mountServiceAccountToken gives each container and init container the templates add the token mount the
// plugin would give it when it runs again, unless the container mounts something at that path itself. The
// added lists are replaced, never written: their items may be a compiled template's own.
func (s *state) mountServiceAccountToken() {
	if len(s.containers.before)+len(s.containers.after)+len(s.inits.before)+len(s.inits.after) == 0 {
		return
	}
	volume := s.serviceAccountTokenVolume()
	if volume == "" {
		return
	}
	mount := tokenMount(volume)
	for _, l := range []*[]item{&s.containers.before, &s.containers.after, &s.inits.before, &s.inits.after} {
		*l = withTokenMounts(*l, mount)
	}
}

// tokenMount is the mount the plugin adds, encoded as encoding/json encodes a corev1.VolumeMount.
func tokenMount(volume string) []byte {
	const rest = `,"readOnly":true,"mountPath":"` + serviceAccountTokenPath + `"}`
	b := make([]byte, 0, len(`{"name":""`)+len(volume)+len(rest)) // a volume name needs no escapes (DNS label)
	b = append(b, `{"name":`...)
	b, _ = jsontext.AppendQuote(b, volume) // a volume name the API server accepted is valid UTF-8
	return append(b, rest...)
}

// withTokenMounts returns the items with mount appended to each one's volumeMounts, as a new list when any
// changes.
func withTokenMounts(items []item, mount []byte) []item {
	var out []item
	for i, it := range items {
		raw, changed := it.tokenSplice().apply(it.raw, mount)
		if !changed {
			continue
		}
		if out == nil {
			out = slices.Clone(items)
		}
		out[i].raw = raw
	}
	if out == nil {
		return items
	}
	return out
}

// withTokenMount returns the encoded container c with mount appended to its volumeMounts (created when absent
// or null), and whether it did; c as it is when the container mounts something at the token path already, or
// cannot be read (every container a template adds was encoded by Compile).
func withTokenMount(c json.RawMessage, mount []byte) (json.RawMessage, bool) {
	return tokenSpliceOf(c).apply(c, mount)
}

// tokenSplice is where the token mount goes into one encoded container: what to write between from and to.
// It depends on the container alone, so a template's containers carry theirs, found once when they are
// encoded or rendered (item.tok); only the mount, which names the pod's token volume, is the pod's.
type tokenSplice struct {
	from, to int32
	kind     spliceKind
}

type spliceKind uint8

const (
	spliceUnknown    spliceKind = iota // not found yet: tokenSpliceOf reads the container
	spliceNone                         // the container mounts something at the token path, or cannot be read
	spliceList                         // volumeMounts is null or empty: [mount] in its place
	spliceAppend                       // ,mount before the list's closing bracket
	spliceMember                       // no volumeMounts: the member, before the closing brace
	spliceOnlyMember                   // no member at all: the member alone
)

// apply writes mount into c as ts says; c as it is under spliceNone.
func (ts tokenSplice) apply(c json.RawMessage, mount []byte) (json.RawMessage, bool) {
	from, to := int(ts.from), int(ts.to)
	switch ts.kind {
	case spliceList:
		return splice(c, from, to, "[", mount, "]"), true
	case spliceAppend:
		return splice(c, from, to, ",", mount, ""), true
	case spliceMember:
		return splice(c, from, to, `,"volumeMounts":[`, mount, "]"), true
	case spliceOnlyMember:
		return splice(c, from, to, `"volumeMounts":[`, mount, "]"), true
	}
	return c, false
}

// tokenSplice returns the item's splice: found when it was encoded, else read now.
func (it *item) tokenSplice() tokenSplice {
	if it.tok.kind != spliceUnknown {
		return it.tok
	}
	return tokenSpliceOf(it.raw)
}

// containerItem is an item for an encoded container, with its token splice found.
func containerItem(key string, raw json.RawMessage) item {
	return item{key: key, raw: raw, tok: tokenSpliceOf(raw)}
}

// tokenSpliceOf reads an encoded container for where the token mount goes. It reads c without decoding it:
// member names are compared as raw bytes (a token's String allocates), the mounts are decoded only when their
// text holds the token path (mount paths are written by encoding/json and jsontext, which escape no letter
// and no '/'), and the decoder is reused. Containers a template adds are read once, when they are encoded
// or rendered; read per admission, this was 5% of the realistic pod's engine time (BenchmarkInject).
func tokenSpliceOf(c json.RawMessage) tokenSplice {
	none := tokenSplice{kind: spliceNone}
	if len(c) > 1<<30 { // offsets are int32; no container is near this
		return none
	}
	d := decoders.Get().(*containerDecoder)
	defer decoders.Put(d)
	d.buf = *bytes.NewBuffer(c) // decoded in place, never written
	d.dec.Reset(&d.buf)
	defer func() { // keep no reference to c in the pool
		d.buf = bytes.Buffer{}
		d.dec.Reset(&d.buf)
	}()
	dec := d.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return none
	}
	members := 0
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil {
			return none
		}
		members++
		if string(name) != `"volumeMounts"` { // no allocation: a comparison
			if dec.SkipValue() != nil {
				return none
			}
			continue
		}
		val, err := dec.ReadValue()
		if err != nil {
			return none
		}
		end := int32(dec.InputOffset()) // just after the value
		if bytes.Contains(val, []byte(serviceAccountTokenPath)) {
			var mounts []mountView
			if err := jsonv2.Unmarshal(val, &mounts); err != nil ||
				slices.ContainsFunc(mounts, func(m mountView) bool { return m.MountPath == serviceAccountTokenPath }) {
				return none
			}
		}
		switch {
		case val.Kind() == 'n', len(bytes.TrimSpace(val[1:len(val)-1])) == 0: // null or []: the list is created
			return tokenSplice{from: end - int32(len(val)), to: end, kind: spliceList}
		default:
			return tokenSplice{from: end - 1, to: end - 1, kind: spliceAppend}
		}
	}
	end := int32(bytes.LastIndexByte(c, '}'))
	if end < 0 {
		return none
	}
	if members == 0 {
		return tokenSplice{from: end, to: end, kind: spliceOnlyMember}
	}
	return tokenSplice{from: end, to: end, kind: spliceMember}
}

// containerDecoder is a reusable decoder of one encoded container.
type containerDecoder struct {
	buf bytes.Buffer
	dec *jsontext.Decoder
}

var decoders = sync.Pool{New: func() any {
	d := &containerDecoder{}
	d.dec = jsontext.NewDecoder(&d.buf)
	return d
}}

// splice returns a copy of b with b[from:to] replaced by pre, mid and post, in one allocation.
func splice(b []byte, from, to int, pre string, mid []byte, post string) []byte {
	out := make([]byte, 0, len(b)-(to-from)+len(pre)+len(mid)+len(post))
	out = append(out, b[:from]...)
	out = append(out, pre...)
	out = append(out, mid...)
	out = append(out, post...)
	return append(out, b[to:]...)
}
