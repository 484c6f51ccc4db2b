package inject

import (
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// statusAnnotationPath is where the record is replaced when the pod has one.
var statusAnnotationPath = memberPath("/metadata/annotations", v1alpha1.AnnotationStatus)

func add(path string, v any) jsonpatch.Operation {
	return jsonpatch.Operation{Operation: "add", Path: path, Value: v}
}

// patch writes the committed additions as JSON patch operations against the raw pod. Operations that address
// the pod's existing array elements by index come before any insertion into those arrays, so every index
// refers to the pod as it arrived. An absent (or null) map or array is created whole in one operation, which
// is why several templates adding to the same absent array all land.
func (s *state) patch() []jsonpatch.Operation {
	s.mountServiceAccountToken() // before anything is written: it replaces the added containers
	status, writeStatus := s.newStatus()

	needSpec := len(s.containers.before)+len(s.containers.after)+len(s.inits.before)+len(s.inits.after)+
		len(s.volumes.after)+len(s.pulls.after)+len(s.dnsAddNS)+len(s.dnsAddSearch)+len(s.dnsAddOpts) > 0
	for _, b := range s.bools {
		needSpec = needSpec || b.set != nil
	}
	for _, a := range s.aliases {
		needSpec = needSpec || len(a.add) > 0 || a.index < 0
	}
	needMeta := len(s.addLabels)+len(s.addAnnotations) > 0 || writeStatus
	// Built in a buffer on the stack and copied out once at its final size: the patch goes into the Result, and
	// growing it op by op allocated several times. (A bigger patch spills to the heap once; still correct.)
	var buf [patchBuffer]jsonpatch.Operation
	ops := buf[:0]
	var lists itemLists
	if needMeta && !s.metaPresent {
		ops = append(ops, add("/metadata", map[string]any{}))
	}
	if needSpec && !s.specPresent {
		ops = append(ops, add("/spec", map[string]any{}))
	}

	ops = appendMap(ops, "/metadata/labels", s.labelsPresent, s.addLabels)
	switch {
	case !writeStatus:
		ops = appendMap(ops, "/metadata/annotations", s.annotationsPresent, s.addAnnotations)
	case s.annotationsPresent && s.statusPresent:
		ops = appendMap(ops, "/metadata/annotations", true, s.addAnnotations)
		ops = append(ops, jsonpatch.Operation{Operation: "replace", Path: statusAnnotationPath, Value: status})
	case s.annotationsPresent:
		// One op per key: the status key goes in its sorted place, without copying the map.
		ops = appendMapKeys(ops, "/metadata/annotations", s.addAnnotations, v1alpha1.AnnotationStatus, status)
	default:
		withStatus := make(map[string]string, len(s.addAnnotations)+1)
		for k, v := range s.addAnnotations {
			withStatus[k] = v
		}
		withStatus[v1alpha1.AnnotationStatus] = status
		ops = appendMap(ops, "/metadata/annotations", false, withStatus)
	}

	for i := range s.apps {
		a := &s.apps[i]
		if len(a.addEnv)+len(a.addMounts)+len(a.addEnvFrom) == 0 {
			continue // most containers of most pods: no path to build
		}
		base, index := "/spec/containers/", strconv.Itoa(a.index)
		if a.init {
			base = "/spec/initContainers/"
		}
		ops = lists.appendList(ops, listPath{parts: [3]string{base, index, "/env"}}, a.envPresent, nil, a.addEnv)
		ops = lists.appendList(ops, listPath{parts: [3]string{base, index, "/volumeMounts"}}, a.mountsPresent, nil, a.addMounts)
		ops = lists.appendList(ops, listPath{parts: [3]string{base, index, "/envFrom"}}, a.envFromPresent, nil, a.addEnvFrom)
	}
	ops = lists.appendList(ops, containersPath, s.containers.present, s.containers.before, s.containers.after)
	ops = lists.appendList(ops, initContainersPath, s.inits.present, s.inits.before, s.inits.after)
	ops = lists.appendList(ops, volumesPath, s.volumes.present, nil, s.volumes.after)
	ops = lists.appendList(ops, pullSecretsPath, s.pulls.present, nil, s.pulls.after)

	var newAliases []corev1.HostAlias
	for _, a := range s.aliases {
		switch {
		case a.index < 0:
			newAliases = append(newAliases, corev1.HostAlias{IP: a.ip, Hostnames: a.add})
		case len(a.add) > 0 && a.hostsPresent:
			for _, h := range a.add {
				ops = append(ops, add("/spec/hostAliases/"+strconv.Itoa(a.index)+"/hostnames/-", h))
			}
		case len(a.add) > 0:
			ops = append(ops, add("/spec/hostAliases/"+strconv.Itoa(a.index)+"/hostnames", a.add))
		}
	}
	if len(newAliases) > 0 {
		if s.aliasesPresent {
			for _, h := range newAliases {
				ops = append(ops, add("/spec/hostAliases/-", h))
			}
		} else {
			ops = append(ops, add("/spec/hostAliases", newAliases))
		}
	}

	ops = s.appendDNS(ops)
	for _, b := range s.bools {
		if b.set != nil {
			ops = append(ops, add("/spec/"+b.field, *b.set))
		}
	}
	if len(ops) == 0 {
		return nil // no patch, not an empty one
	}
	out := make([]jsonpatch.Operation, len(ops)) // exactly: append would round up to a size class
	copy(out, ops)
	return out
}

// patchBuffer is how many operations patch builds on the stack: more than a pod with a handful of templates
// gets.
const patchBuffer = 128

// appendMap adds keys to a string map at path, creating it whole when absent.
func appendMap(ops []jsonpatch.Operation, path string, present bool, m map[string]string) []jsonpatch.Operation {
	if len(m) == 0 {
		return ops
	}
	if !present {
		return append(ops, add(path, m)) // encoding/json writes map keys sorted: deterministic
	}
	return appendMapKeys(ops, path, m, "", "")
}

// appendMapKeys adds every key of m to the existing map at path, and extraKey (when not empty) with extraVal,
// which wins over a value m has for it; in key order.
func appendMapKeys(ops []jsonpatch.Operation, path string, m map[string]string, extraKey, extraVal string) []jsonpatch.Operation {
	var buf [16]string // templates add a few annotations or labels: sorted on the stack
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	if _, dup := m[extraKey]; extraKey != "" && !dup {
		keys = append(keys, extraKey)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		if extraKey != "" && k == extraKey {
			v = extraVal
		}
		ops = append(ops, add(memberPath(path, k), v))
	}
	return ops
}

// memberPath is the JSON pointer to member key of the object at path, the key escaped as RFC 6901 says (~ as
// ~0, / as ~1). Built in one allocation: a strings.Replacer then a concatenation took two per key.
func memberPath(path, key string) string {
	var b strings.Builder
	b.Grow(len(path) + 1 + len(key) + strings.Count(key, "~") + strings.Count(key, "/"))
	b.WriteString(path)
	b.WriteByte('/')
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case '~':
			b.WriteString("~0")
		case '/':
			b.WriteString("~1")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// listPath is an array the patch adds to: its path and the path that appends to it, when constant; else the
// parts they are built from, in one concatenation each, only when written.
type listPath struct {
	path, end string
	parts     [3]string
}

func (lp *listPath) full() string {
	if lp.path != "" {
		return lp.path
	}
	return lp.parts[0] + lp.parts[1] + lp.parts[2]
}

func (lp *listPath) appendPath() string {
	if lp.end != "" {
		return lp.end
	}
	return lp.parts[0] + lp.parts[1] + lp.parts[2] + "/-"
}

// The pod's own lists have constant paths: nothing to build per admission.
var (
	containersPath     = listPath{path: "/spec/containers", end: "/spec/containers/-"}
	initContainersPath = listPath{path: "/spec/initContainers", end: "/spec/initContainers/-"}
	volumesPath        = listPath{path: "/spec/volumes", end: "/spec/volumes/-"}
	pullSecretsPath    = listPath{path: "/spec/imagePullSecrets", end: "/spec/imagePullSecrets/-"}
)

// itemList is the value of an operation that creates an array whole: the encodings of before, then after.
type itemList struct{ before, after []item }

// MarshalJSON writes the list as appendValue does, for a caller that encodes Result.Patch with encoding/json.
func (l *itemList) MarshalJSON() ([]byte, error) { return appendValue(nil, l) }

func (l *itemList) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, it := range l.before {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.raw...)
	}
	for i, it := range l.after {
		if i > 0 || len(l.before) > 0 {
			b = append(b, ',')
		}
		b = append(b, it.raw...)
	}
	return append(b, ']')
}

// size is the length of appendJSON's output.
func (l *itemList) size() int {
	n := len(`[]`) + max(len(l.before)+len(l.after)-1, 0)
	for _, it := range l.before {
		n += len(it.raw)
	}
	for _, it := range l.after {
		n += len(it.raw)
	}
	return n
}

// itemLists holds the values of one patch's array-creating operations, made a few at a time: an operation's
// value is an interface, and each list put in one on its own was an allocation (two with its copy of the
// encodings).
type itemLists struct{ free []itemList }

// appendList inserts before at the front of the array at lp (in order) and appends after, creating the array
// whole when absent.
func (ls *itemLists) appendList(ops []jsonpatch.Operation, lp listPath, present bool, before, after []item) []jsonpatch.Operation {
	if len(before)+len(after) == 0 {
		return ops
	}
	if !present {
		if len(ls.free) == 0 {
			ls.free = make([]itemList, 4) // a pod rarely lacks more lists than this
		}
		l := &ls.free[0]
		ls.free = ls.free[1:]
		l.before, l.after = before, after
		return append(ops, add(lp.full(), l))
	}
	// The values point at the items' encodings (in the state, which the patch outlives): a json.RawMessage put
	// in an interface is copied to the heap, one allocation per item.
	if len(before) > 0 {
		path := lp.full()
		for i := range before {
			ops = append(ops, add(path+"/"+strconv.Itoa(i), &before[i].raw))
		}
	}
	if len(after) > 0 {
		end := lp.appendPath() // every append shares one path string
		for i := range after {
			ops = append(ops, add(end, &after[i].raw))
		}
	}
	return ops
}

func (s *state) appendDNS(ops []jsonpatch.Operation) []jsonpatch.Operation {
	if len(s.dnsAddNS)+len(s.dnsAddSearch)+len(s.dnsAddOpts) == 0 {
		return ops
	}
	if !s.dnsPresent {
		return append(ops, add("/spec/dnsConfig", &corev1.PodDNSConfig{
			Nameservers: s.dnsAddNS, Searches: s.dnsAddSearch, Options: s.dnsAddOpts}))
	}
	strs := func(path string, present bool, vals []string) {
		if len(vals) == 0 {
			return
		}
		if !present {
			ops = append(ops, add(path, vals))
			return
		}
		for _, v := range vals {
			ops = append(ops, add(path+"/-", v))
		}
	}
	strs("/spec/dnsConfig/nameservers", s.dns.Nameservers != nil, s.dnsAddNS)
	strs("/spec/dnsConfig/searches", s.dns.Searches != nil, s.dnsAddSearch)
	if len(s.dnsAddOpts) > 0 {
		if s.dns.Options == nil {
			ops = append(ops, add("/spec/dnsConfig/options", s.dnsAddOpts))
		} else {
			for _, o := range s.dnsAddOpts {
				ops = append(ops, add("/spec/dnsConfig/options/-", o))
			}
		}
	}
	return ops
}
