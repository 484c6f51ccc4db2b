package inject

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// parameter is a declared parameter, its type and bounds parsed once at Compile.
type parameter struct {
	v1alpha1.TemplateParameter
	typ      v1alpha1.ParameterType
	min, max *resource.Quantity // nil: no bound; an Integer's bounds are whole quantities
	def      *string            // the default as substituted (see check); nil: the pod must set it
}

// compileParameters checks the declarations (each name once; a known type; bounds only on typed parameters,
// of that type, minimum not above maximum; a default of the type and within the bounds) and returns them.
func compileParameters(spec *v1alpha1.SidecarTemplateSpec, c *checks) []parameter {
	out := make([]parameter, 0, len(spec.Parameters))
	seen := make(map[string]bool, len(spec.Parameters))
	for i, p := range spec.Parameters {
		at := fmt.Sprintf("spec.parameters[%d] (%q)", i, p.Name)
		if seen[p.Name] {
			c.add("spec.parameters[%d]: parameter %q is declared twice", i, p.Name)
		}
		seen[p.Name] = true
		pp := parameter{TemplateParameter: p, typ: cmp.Or(p.Type, v1alpha1.ParameterTypeString), def: p.Default}
		switch pp.typ {
		case v1alpha1.ParameterTypeString:
			if p.Minimum != nil || p.Maximum != nil {
				c.add("%s: minimum and maximum need type Quantity or Integer", at)
			}
		case v1alpha1.ParameterTypeQuantity, v1alpha1.ParameterTypeInteger:
			var ok bool
			if pp.min, ok = parseBound(pp.typ, p.Minimum, at+".minimum", c); ok {
				if pp.max, ok = parseBound(pp.typ, p.Maximum, at+".maximum", c); ok && pp.min != nil && pp.max != nil && pp.min.Cmp(*pp.max) > 0 {
					c.add("%s: minimum %s is above maximum %s", at, pp.min, pp.max)
				}
			}
			if p.Default != nil {
				v, msg := pp.check(*p.Default)
				if msg != "" {
					c.add("%s: the default %s", at, msg)
				}
				pp.def = &v
			}
		default:
			c.add("%s: type must be String, Quantity or Integer, not %q", at, p.Type)
		}
		out = append(out, pp)
	}
	return out
}

// parseBound parses a minimum or maximum as the parameter's type; ok is false when it cannot be.
func parseBound(typ v1alpha1.ParameterType, b *intstr.IntOrString, at string, c *checks) (*resource.Quantity, bool) {
	if b == nil {
		return nil, true
	}
	v, msg := parseTyped(typ, b.String())
	if msg != "" {
		c.add("%s %s", at, msg)
		return nil, false
	}
	return &v, true
}

// parseTyped parses a value of a Quantity or Integer parameter, or says why it is not one.
func parseTyped(typ v1alpha1.ParameterType, s string) (resource.Quantity, string) {
	if typ == v1alpha1.ParameterTypeInteger {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return resource.Quantity{}, fmt.Sprintf("%q is not an integer (a whole number such as 8080)", s)
		}
		return *resource.NewQuantity(n, resource.DecimalSI), ""
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return resource.Quantity{}, fmt.Sprintf("%q is not a quantity (such as 250m, 2 or 128Mi)", s)
	}
	return q, ""
}

// check returns the value as it is substituted (a quantity in its canonical form, as the API server stores
// it, so that the pod's copy and a re-render compare equal; an integer in decimal), or why the value cannot be
// used: not of the type, or out of the bounds, each naming the value and the bound.
func (p *parameter) check(s string) (string, string) {
	if p.typ == v1alpha1.ParameterTypeString {
		return s, ""
	}
	v, msg := parseTyped(p.typ, s)
	if msg != "" {
		return "", msg
	}
	if p.min != nil && v.Cmp(*p.min) < 0 {
		return "", fmt.Sprintf("%q is below the minimum %s", s, p.min)
	}
	if p.max != nil && v.Cmp(*p.max) > 0 {
		return "", fmt.Sprintf("%q is above the maximum %s", s, p.max)
	}
	if p.typ == v1alpha1.ParameterTypeInteger {
		return strconv.FormatInt(v.Value(), 10), ""
	}
	return v.String(), ""
}

// typedPlaceholderRE is v1alpha1.TypedPlaceholderPattern (what the CRD accepts) with the parameter's name
// captured; TestTypedPlaceholderPatternsAgree keeps the two the same.
var typedPlaceholderRE = regexp.MustCompile(`^\{\{\s*params\.([a-z](?:[-a-z0-9]*[a-z0-9])?)\s*\}\}$`)

// typedPathRE is a path that SplitTypedPlaceholders gives: list, index, and the field within the container.
var typedPathRE = regexp.MustCompile(`^(containers|initContainers)\[(\d+)\]\.(?:resources\.(?:requests|limits)\.[^.].*|ports\[(\d+)\]\.(?:containerPort|hostPort))$`)

// checkTypedPlaceholders checks each placeholder that stands where the API types hold a quantity or an
// integer: exactly one {{ params.NAME }} of a declared parameter of that type, at a field that can hold one.
func checkTypedPlaceholders(spec *v1alpha1.SidecarTemplateSpec, params []parameter, c *checks) {
	typeOf := make(map[string]v1alpha1.ParameterType, len(params))
	for _, p := range params {
		typeOf[p.Name] = p.typ
	}
	for _, path := range slices.Sorted(maps.Keys(spec.TypedPlaceholders)) {
		v := spec.TypedPlaceholders[path]
		if !checkTypedPath(spec, path, c) {
			continue
		}
		want := v1alpha1.ParameterTypeQuantity
		if v1alpha1.IsIntegerField(path) {
			want = v1alpha1.ParameterTypeInteger
		}
		m := typedPlaceholderRE.FindStringSubmatch(v)
		switch {
		case m == nil:
			c.add("spec.%s is %q: this field holds a %s or exactly one {{ params.NAME }} of a parameter of type %s", path, v,
				map[v1alpha1.ParameterType]string{v1alpha1.ParameterTypeQuantity: "quantity", v1alpha1.ParameterTypeInteger: "whole number"}[want], want)
		case typeOf[m[1]] == "":
			c.add("spec.%s uses parameter %q, which spec.parameters does not declare", path, m[1])
		case typeOf[m[1]] != want:
			c.add("spec.%s uses parameter %q of type %s; this field needs a parameter of type %s (declare it with type: %s)",
				path, m[1], typeOf[m[1]], want, want)
		}
	}
}

// checkTypedPath refuses a path that names no container or port of the spec (only a spec built in Go can have
// one: SplitTypedPlaceholders gives paths that exist).
func checkTypedPath(spec *v1alpha1.SidecarTemplateSpec, path string, c *checks) bool {
	m := typedPathRE.FindStringSubmatch(path)
	if m == nil {
		c.add("spec.%s cannot hold a placeholder", path)
		return false
	}
	list := spec.Containers
	if m[1] == "initContainers" {
		list = spec.InitContainers
	}
	i, _ := strconv.Atoi(m[2])
	if i >= len(list) {
		c.add("spec.%s: spec.%s has %d entries", path, m[1], len(list))
		return false
	}
	if m[3] != "" {
		if j, _ := strconv.Atoi(m[3]); j >= len(list[i].Ports) {
			c.add("spec.%s: the container has %d ports", path, len(list[i].Ports))
			return false
		}
	}
	return true
}
