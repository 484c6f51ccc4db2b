package inject

import (
	"encoding/json"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func add(path string, v any) jsonpatch.Operation {
	return jsonpatch.Operation{Operation: "add", Path: path, Value: v}
}

func raws(items []item) []json.RawMessage {
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		out[i] = it.raw
	}
	return out
}

// patch writes the committed additions as JSON patch operations against the raw pod. Operations that address
// the pod's existing array elements by index come before any insertion into those arrays, so every index
// refers to the pod as it arrived. An absent (or null) map or array is created whole in one operation, which
// is why several templates adding to the same absent array all land.
func (s *state) patch() []jsonpatch.Operation {
	var ops []jsonpatch.Operation
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
	if needMeta && !s.metaPresent {
		ops = append(ops, add("/metadata", map[string]any{}))
	}
	if needSpec && !s.specPresent {
		ops = append(ops, add("/spec", map[string]any{}))
	}

	ops = appendMap(ops, "/metadata/labels", s.labelsPresent, s.addLabels)
	if writeStatus {
		if s.annotationsPresent && s.statusPresent {
			ops = appendMap(ops, "/metadata/annotations", true, s.addAnnotations)
			ops = append(ops, jsonpatch.Operation{Operation: "replace",
				Path: "/metadata/annotations/" + pointerEscaper.Replace(v1alpha1.AnnotationStatus), Value: status})
		} else {
			withStatus := make(map[string]string, len(s.addAnnotations)+1)
			for k, v := range s.addAnnotations {
				withStatus[k] = v
			}
			withStatus[v1alpha1.AnnotationStatus] = status
			ops = appendMap(ops, "/metadata/annotations", s.annotationsPresent, withStatus)
		}
	} else {
		ops = appendMap(ops, "/metadata/annotations", s.annotationsPresent, s.addAnnotations)
	}

	for _, a := range s.apps {
		base := "/spec/containers/" + strconv.Itoa(a.index)
		ops = appendList(ops, base+"/env", a.envPresent, nil, a.addEnv)
		ops = appendList(ops, base+"/volumeMounts", a.mountsPresent, nil, a.addMounts)
		ops = appendList(ops, base+"/envFrom", a.envFromPresent, nil, a.addEnvFrom)
	}
	ops = appendList(ops, "/spec/containers", s.containers.present, s.containers.before, s.containers.after)
	ops = appendList(ops, "/spec/initContainers", s.inits.present, s.inits.before, s.inits.after)
	ops = appendList(ops, "/spec/volumes", s.volumes.present, nil, s.volumes.after)
	ops = appendList(ops, "/spec/imagePullSecrets", s.pulls.present, nil, s.pulls.after)

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
	return ops
}

// appendMap adds keys to a string map at path, creating it whole when absent.
func appendMap(ops []jsonpatch.Operation, path string, present bool, m map[string]string) []jsonpatch.Operation {
	if len(m) == 0 {
		return ops
	}
	if !present {
		return append(ops, add(path, m)) // encoding/json writes map keys sorted: deterministic
	}
	for _, k := range sortedKeys(m) {
		ops = append(ops, add(path+"/"+pointerEscaper.Replace(k), m[k]))
	}
	return ops
}

// appendList inserts before at the front of the array at path (in order) and appends after, creating the array
// whole when absent.
func appendList(ops []jsonpatch.Operation, path string, present bool, before, after []item) []jsonpatch.Operation {
	if len(before)+len(after) == 0 {
		return ops
	}
	if !present {
		return append(ops, add(path, raws(append(append([]item{}, before...), after...))))
	}
	for i, it := range before {
		ops = append(ops, add(path+"/"+strconv.Itoa(i), it.raw))
	}
	for _, it := range after {
		ops = append(ops, add(path+"/-", it.raw))
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

// newStatus returns the record to write and whether it must be written: only when a template was injected in
// this run (a pod that receives nothing gets no patch at all), and then naming exactly the templates the pod
// now contains, which also corrects a forged or stale record.
func (s *state) newStatus() (string, bool) {
	if !s.injected {
		return "", false
	}
	var entries []StatusEntry
	for _, e := range s.entries {
		if s.present[e.Namespace+"/"+e.Name] {
			entries = append(entries, e)
		}
	}
	enc := encodeStatus(entries)
	if s.statusPresent && enc == s.statusRaw {
		return "", false
	}
	return enc, true
}
