package inject

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// placeholderRE matches the per-pod values the engine substitutes: {{ pod.* }} and {{ params.* }}. Any other
// {{ ... }} text is not matched and passes through unchanged, so templates for other template languages (Vault
// agent, consul-template, Helm in a ConfigMap) survive. The pattern runs over the JSON encoding of the
// template, where the characters it accepts are never escaped.
var placeholderRE = regexp.MustCompile(`\{\{\s*((?:pod|params)\.[^{}\s]*)\s*\}\}`)

const knownValues = "pod.name, pod.generateName, pod.namespace, pod.serviceAccountName, pod.labels.KEY, pod.annotations.KEY or params.NAME"

// findPlaceholders counts the per-pod values in a template's JSON, returns the distinct expressions used
// (sorted), and reports every one that cannot be resolved: an unknown pod field or an undeclared parameter.
func findPlaceholders(js []byte, declared map[string]bool) (int, []string, []string) {
	matches := placeholderRE.FindAllSubmatch(js, -1)
	var exprs, errs []string
	for _, m := range matches {
		expr := string(m[1])
		if slices.Contains(exprs, expr) {
			continue
		}
		exprs = append(exprs, expr)
		if msg := checkExpr(expr, declared); msg != "" {
			errs = append(errs, msg)
		}
	}
	slices.Sort(exprs)
	return len(matches), exprs, errs
}

func checkExpr(expr string, declared map[string]bool) string {
	switch {
	case expr == "pod.name", expr == "pod.generateName", expr == "pod.namespace", expr == "pod.serviceAccountName":
		return ""
	case strings.HasPrefix(expr, "pod.labels."), strings.HasPrefix(expr, "pod.annotations."):
		if strings.HasSuffix(expr, ".") {
			return fmt.Sprintf("per-pod value {{ %s }} names no key", expr)
		}
		return ""
	case strings.HasPrefix(expr, "params."):
		name := strings.TrimPrefix(expr, "params.")
		if !declared[name] {
			return fmt.Sprintf("per-pod value {{ %s }} uses parameter %q, which spec.parameters does not declare", expr, name)
		}
		return ""
	}
	return fmt.Sprintf("unknown per-pod value {{ %s }}: use %s", expr, knownValues)
}

// nextPlaceholder finds the first per-pod value in s at or after from: the same grammar as placeholderRE
// (which defines it, and is used where speed does not matter), scanned by hand because substitution runs for
// every pod. It returns the span of the whole {{ ... }} and the expression inside.
func nextPlaceholder[T ~string | ~[]byte](s T, from int) (start, end int, expr T, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }
	for i := from; i+1 < len(s); i++ {
		if s[i] != '{' || s[i+1] != '{' {
			continue
		}
		j := i + 2
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		k := j
		for k < len(s) && s[k] != '{' && s[k] != '}' && !isSpace(s[k]) {
			k++
		}
		e := s[j:k]
		if !(len(e) >= 4 && string(e[:4]) == "pod.") && !(len(e) >= 7 && string(e[:7]) == "params.") {
			continue
		}
		m := k
		for m < len(s) && isSpace(s[m]) {
			m++
		}
		if m+1 < len(s) && s[m] == '}' && s[m+1] == '}' {
			return i, m + 2, e, true
		}
	}
	return 0, 0, s[:0], false
}

// substituteJSON replaces every per-pod value in an encoded item. Values are JSON-string-escaped: placeholders
// only ever stand inside JSON strings, so the result is valid JSON whatever the pod's labels contain.
func substituteJSON(js []byte, resolve func(string) string) []byte {
	out := make([]byte, 0, len(js)+32)
	last := 0
	for {
		start, end, expr, ok := nextPlaceholder(js, last)
		if !ok {
			return append(out, js[last:]...)
		}
		out = append(out, js[last:start]...)
		if integerField(js, start, end) {
			// An Integer parameter standing for a whole port number (checked at Compile, and a number
			// once resolved): written as a JSON number, in place of the string that held it.
			if v := resolve(string(expr)); v != "" {
				out = append(out[:len(out)-1], v...)
				last = end + 1
				continue
			}
		}
		// Quoted in place, then the quotes dropped: no buffer of its own for each value.
		at := len(out)
		out = quote(out, resolve(string(expr)))
		out = append(out[:at], out[at+1:len(out)-1]...)
		last = end
	}
}

// integerField reports whether the placeholder at js[start:end] is the whole string value of an integer field
// that may hold a typed placeholder (v1alpha1.IntegerFields): `"containerPort":"{{ params.port }}"`. The
// encoding is compact (json.Marshal's), and a quote inside a string value is escaped, so the bytes before the
// value are the field's key only where the key is one.
func integerField(js []byte, start, end int) bool {
	if start < 1 || end >= len(js) || js[start-1] != '"' || js[end] != '"' {
		return false
	}
	for _, f := range v1alpha1.IntegerFields {
		key := `"` + f + `":`
		if k := start - 1 - len(key); k >= 1 && string(js[k:start-1]) == key && (js[k-1] == '{' || js[k-1] == ',') {
			return true
		}
	}
	return false
}

// substituteString replaces every per-pod value in a plain string (a key: an env var name, a mount path).
func substituteString(s string, resolve func(string) string) string {
	var out strings.Builder
	last := 0
	for {
		start, end, expr, ok := nextPlaceholder(s, last)
		if !ok {
			if last == 0 {
				return s
			}
			out.WriteString(s[last:])
			return out.String()
		}
		out.WriteString(s[last:start])
		out.WriteString(resolve(expr))
		last = end
	}
}

// instanceFor returns the template's additions for one pod: t.base itself when it has no per-pod values, else
// its rendering with this pod's values (render), kept in the template's cache for the next pod with the same
// values (renderCache). What it returns is shared and read-only.
//
// recorded, when not nil, are the values the pod's record says the template was rendered with (StatusEntry.Values):
// they take the place of the pod's current ones, so that what this injector rendered once renders the same
// again whatever happened to the pod's labels and annotations since (SPEC guarantee 2). The rendered instance
// carries the values it used (in.values), for the record.
//
// What the per-pod values copy in is counted against maxRendered as they are resolved: past it, every further
// value resolves to nothing (so nothing more is copied) and the result is a *LimitError.
func (t *Template) instanceFor(pv *podValues, recorded map[string]string, maxRendered int) (*instance, error) {
	params, err := t.resolveParams(pv, recorded)
	if err != nil {
		return nil, err
	}
	base := t.base
	if pv.completes {
		base = t.jobInstance()
	}
	if !t.placeholders {
		return base, nil
	}
	value := resolver(pv, params, recorded)
	// Pods with the same per-pod values get the same rendering: the template's cache keeps the latest few.
	var buf [128]byte
	key := t.renderKey(buf[:0], pv.completes, value)
	if r := t.renders.get(key); r != nil && r.copied <= maxRendered {
		return r.in, nil
	}
	in, copied, err := t.render(base, value, maxRendered)
	if err == nil {
		t.renders.add(&rendering{key: string(key), in: in, copied: copied})
	}
	return in, err
}

// render substitutes the per-pod values (value) into base: only the items that hold per-pod values are
// rewritten, on their encoded bytes. It returns the rendering and how many bytes the values copied in.
func (t *Template) render(base *instance, value func(expr string) string, maxRendered int) (*instance, int, error) {
	copied, exceeded := 0, false
	resolve := func(expr string) string {
		v := value(expr)
		if copied += len(v); copied > maxRendered {
			exceeded = true
			return ""
		}
		return v
	}
	in := new(instance)
	*in = *base
	in.values = t.valuesUsed(value)
	items := func(list []item) []item {
		if !slices.ContainsFunc(list, func(it item) bool { return it.dyn }) {
			return list
		}
		out := slices.Clone(list)
		for i := range out {
			if out[i].dyn {
				out[i].raw = substituteJSON(out[i].raw, resolve)
				out[i].key = substituteString(out[i].key, resolve)
				out[i].dyn = false
				if out[i].tok.kind != spliceUnknown { // a container: its token splice moved with the values
					out[i].tok = tokenSpliceOf(out[i].raw)
				}
			}
		}
		return out
	}
	in.containers, in.initContainers, in.volumes = items(in.containers), items(in.initContainers), items(in.volumes)
	in.mounts, in.env, in.pullSecrets = items(in.mounts), items(in.env), items(in.pullSecrets)
	if slices.ContainsFunc(in.envFrom, func(it item) bool { return it.dyn }) {
		in.envFrom = items(in.envFrom)
		for i := range in.envFrom { // the key of an envFrom entry is its encoding
			in.envFrom[i].key = string(in.envFrom[i].raw)
		}
	}
	if slices.ContainsFunc(in.mountVolumes, hasPlaceholder) {
		in.mountVolumes = slices.Clone(in.mountVolumes)
		for i := range in.mountVolumes {
			in.mountVolumes[i] = substituteString(in.mountVolumes[i], resolve)
		}
	}

	var err error
	if in.annotations, in.annotationVals, err = substituteMap("annotations", in.annotations, in.annotationVals, resolve); err != nil {
		return nil, 0, err
	}
	if in.labels, in.labelVals, err = substituteMap("labels", in.labels, in.labelVals, resolve); err != nil {
		return nil, 0, err
	}
	if in.dynNamespaceSettings { // hostAliases and dnsConfig: small, rare with per-pod values
		var ns struct {
			HostAliases []corev1.HostAlias   `json:"hostAliases,omitempty"`
			DNSConfig   *corev1.PodDNSConfig `json:"dnsConfig,omitempty"`
		}
		js, _ := json.Marshal(map[string]any{"hostAliases": in.hostAliases, "dnsConfig": in.dnsConfig})
		if err := json.Unmarshal(substituteJSON(js, resolve), &ns); err != nil {
			return nil, 0, fmt.Errorf("per-pod values produced an unreadable template: %v", err) // cannot happen
		}
		in.hostAliases, in.dnsConfig = ns.HostAliases, ns.DNSConfig
	}
	if exceeded {
		return nil, 0, &LimitError{Template: t.Name, Limit: "max-rendered-bytes", Max: maxRendered,
			What: fmt.Sprintf("its per-pod values copy more than %d bytes into what it adds", maxRendered)}
	}
	return in, copied, nil
}

func hasPlaceholder[T ~string | ~[]byte](s T) bool {
	_, _, _, ok := nextPlaceholder(s, 0)
	return ok
}

// substituteMap substitutes per-pod values in the keys and values of annotations or labels (field), and checks
// what a placeholder wrote as Compile checks a fixed key: the sidecar.dev/ reservation and what the API server
// accepts hold for rendered keys and label values too, and two keys may not render to one.
func substituteMap(field string, keys []string, vals map[string]string, resolve func(string) string) ([]string, map[string]string, error) {
	dyn := false
	for _, k := range keys {
		if hasPlaceholder(k) || hasPlaceholder(vals[k]) {
			dyn = true
			break
		}
	}
	if !dyn {
		return keys, vals, nil
	}
	out := make(map[string]string, len(vals))
	from := make(map[string]string, len(vals)) // rendered key -> the template's key
	for _, k := range keys {
		rk, rv := substituteString(k, resolve), substituteString(vals[k], resolve)
		if rk != k {
			if err := checkRenderedKey(field, k, rk); err != nil {
				return nil, nil, err
			}
		}
		if prev, dup := from[rk]; dup {
			return nil, nil, &invalidRender{fmt.Sprintf("spec.%s[%q] and spec.%s[%q] both render to %q for this pod", field, prev, field, k, rk)}
		}
		if field == "labels" && rv != vals[k] {
			if msgs := validation.IsValidLabelValue(rv); len(msgs) > 0 {
				return nil, nil, &invalidRender{fmt.Sprintf("spec.labels[%q] renders to %q, not a valid label value: %s", k, rv, strings.Join(msgs, "; "))}
			}
		}
		out[rk], from[rk] = rv, k
	}
	return slices.Sorted(maps.Keys(out)), out, nil
}

// checkRenderedKey checks an annotation or label key that per-pod values wrote.
func checkRenderedKey(field, key, rendered string) error {
	if strings.HasPrefix(rendered, v1alpha1.ReservedPrefix) {
		return &invalidRender{fmt.Sprintf("spec.%s[%q] renders to %q: keys under %s are reserved for the injector", field, key, rendered, v1alpha1.ReservedPrefix)}
	}
	check := rendered
	if field == "annotations" {
		check = strings.ToLower(rendered) // as the API server checks annotation keys
	}
	if msgs := validation.IsQualifiedName(check); len(msgs) > 0 {
		return &invalidRender{fmt.Sprintf("spec.%s[%q] renders to %q, not a valid key: %s", field, key, rendered, strings.Join(msgs, "; "))}
	}
	return nil
}

// invalidRender is what a template renders, for one pod, that no pod may carry: the template is Invalid for
// that pod.
type invalidRender struct{ msg string }

func (e *invalidRender) Error() string { return e.msg }
