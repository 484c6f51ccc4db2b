package inject

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// placeholderRE matches the per-pod values the engine substitutes: {{ pod.* }} and {{ params.* }}. Any other
// {{ ... }} text is not matched and passes through unchanged, so templates for other template languages (Vault
// agent, consul-template, Helm in a ConfigMap) survive. The pattern runs over the JSON encoding of the
// template, where the characters it accepts are never escaped.
var placeholderRE = regexp.MustCompile(`\{\{\s*((?:pod|params)\.[^{}\s]*)\s*\}\}`)

const knownValues = "pod.name, pod.generateName, pod.namespace, pod.serviceAccountName, pod.labels.KEY, pod.annotations.KEY or params.NAME"

// findPlaceholders counts the per-pod values in a template's JSON and reports every one that cannot be resolved:
// an unknown pod field or an undeclared parameter.
func findPlaceholders(js []byte, declared map[string]bool) (int, []string) {
	matches := placeholderRE.FindAllSubmatch(js, -1)
	var errs []string
	seen := map[string]bool{}
	for _, m := range matches {
		expr := string(m[1])
		if seen[expr] {
			continue
		}
		seen[expr] = true
		if msg := checkExpr(expr, declared); msg != "" {
			errs = append(errs, msg)
		}
	}
	return len(matches), errs
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

// podValues is what per-pod values resolve against.
type podValues struct {
	name, generateName, namespace, serviceAccount string
	labels, annotations                           map[string]string
}

// paramAnnotation is the pod annotation that sets parameter param of template tmpl.
func paramAnnotation(tmpl, param string) string {
	return tmpl + v1alpha1.ParamAnnotationSuffix + param
}

// resolveParams returns the value of every declared parameter for this pod, or the message for the first one
// that has neither a default nor a pod annotation.
func (t *Template) resolveParams(pv *podValues) (map[string]string, string) {
	if len(t.params) == 0 {
		return nil, ""
	}
	out := make(map[string]string, len(t.params))
	for _, p := range t.params {
		if v, ok := pv.annotations[paramAnnotation(t.Name, p.Name)]; ok {
			out[p.Name] = v
			continue
		}
		if p.Default == nil {
			return nil, fmt.Sprintf("parameter %q has no default and the pod does not set it; add the annotation %q to the pod",
				p.Name, paramAnnotation(t.Name, p.Name))
		}
		out[p.Name] = *p.Default
	}
	return out, ""
}

// substitute replaces every per-pod value in js. Values are JSON-string-escaped: the placeholders only ever
// stand inside JSON strings, so the result is valid JSON whatever the pod's labels contain.
func substitute(js []byte, pv *podValues, params map[string]string) []byte {
	return placeholderRE.ReplaceAllFunc(js, func(m []byte) []byte {
		expr := string(placeholderRE.FindSubmatch(m)[1])
		var v string
		switch {
		case expr == "pod.name":
			v = pv.name
		case expr == "pod.generateName":
			v = pv.generateName
		case expr == "pod.namespace":
			v = pv.namespace
		case expr == "pod.serviceAccountName":
			v = pv.serviceAccount
		case strings.HasPrefix(expr, "pod.labels."):
			v = pv.labels[strings.TrimPrefix(expr, "pod.labels.")]
		case strings.HasPrefix(expr, "pod.annotations."):
			v = pv.annotations[strings.TrimPrefix(expr, "pod.annotations.")]
		case strings.HasPrefix(expr, "params."):
			v = params[strings.TrimPrefix(expr, "params.")]
		}
		enc, _ := json.Marshal(v) // a string always encodes
		return enc[1 : len(enc)-1]
	})
}

// instanceFor returns the template's additions for one pod.
func (t *Template) instanceFor(pv *podValues) (*instance, string) {
	params, msg := t.resolveParams(pv)
	if msg != "" {
		return nil, msg
	}
	if t.static != nil {
		return t.static, ""
	}
	var pl payload
	if err := json.Unmarshal(substitute(t.payloadJSON, pv, params), &pl); err != nil {
		// Cannot happen: substitution keeps the JSON valid and only changes string contents.
		return nil, fmt.Sprintf("per-pod values produced an unreadable template: %v", err)
	}
	return newInstance(&pl), ""
}
