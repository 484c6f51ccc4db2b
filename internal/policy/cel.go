package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// placeholderRE is the grammar of a per-pod value, as the engine defines it (inject's placeholderRE, not
// exported): {{ pod.* }} and {{ params.* }}; any other {{ ... }} passes through as text. The differential test
// (test/policy) catches a drift between the two.
var placeholderRE = regexp.MustCompile(`\{\{\s*((?:pod|params)\.[^{}\s]*)\s*\}\}`)

// paramAnnotation is the pod annotation that sets parameter param of template tmpl.
func paramAnnotation(tmpl, param string) string { return tmpl + v1alpha1.ParamAnnotationSuffix + param }

// CEL fragments over the admission request that every generated expression shares. The object is the pod
// being created, as the API server holds it after its own defaulting and earlier mutations.
const (
	celAnnotations = "object.metadata.?annotations.orValue({})"
	celLabels      = "object.metadata.?labels.orValue({})"
	celNSLabels    = "namespaceObject.metadata.?labels.orValue({})"
)

// celAnnotation is the value of one pod annotation, ” when absent.
func celAnnotation(key string) string {
	return fmt.Sprintf("object.metadata.?annotations[?%s].orValue('')", celQuote(key))
}

// celQuote writes s as a CEL string literal. CEL accepts Go's escapes (\a \b \f \n \r \t \v \\ \" \u \U \x).
func celQuote(s string) string { return strconv.Quote(s) }

// celStringList writes a list of strings as a CEL list literal.
func celStringList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = celQuote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// selectorCEL writes a label selector as a CEL condition over the label map labels, with the semantics of
// metav1.LabelSelectorAsSelector: every matchLabels pair and every expression must hold; an empty selector
// matches everything. The selector has been validated by inject.Compile.
func selectorCEL(sel *metav1.LabelSelector, labels string) string {
	var terms []string
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		terms = append(terms, fmt.Sprintf("%s[?%s] == optional.of(%s)", labels, celQuote(k), celQuote(sel.MatchLabels[k])))
	}
	for _, e := range sel.MatchExpressions {
		k := celQuote(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			terms = append(terms, fmt.Sprintf("(%s in %s && %s[%s] in %s)", k, labels, labels, k, celStringList(e.Values)))
		case metav1.LabelSelectorOpNotIn:
			terms = append(terms, fmt.Sprintf("!(%s in %s && %s[%s] in %s)", k, labels, labels, k, celStringList(e.Values)))
		case metav1.LabelSelectorOpExists:
			terms = append(terms, fmt.Sprintf("%s in %s", k, labels))
		case metav1.LabelSelectorOpDoesNotExist:
			terms = append(terms, fmt.Sprintf("!(%s in %s)", k, labels))
		}
	}
	if len(terms) == 0 {
		return "true"
	}
	return "(" + strings.Join(terms, " && ") + ")"
}

// values turns the per-pod values of one template into CEL: pod fields and the template's parameters. The
// webhook resolves the same names (inject's placeholders.go); the grammar of a placeholder is inject's.
type values struct {
	template string
	defaults map[string]string // parameter -> default ("" for a required one: its absence fails first)
}

func (v *values) expr(name string) (string, bool) {
	switch {
	case name == "pod.name":
		return "object.metadata.?name.orValue('')", true
	case name == "pod.generateName":
		return "object.metadata.?generateName.orValue('')", true
	case name == "pod.namespace":
		return "request.namespace", true
	case name == "pod.serviceAccountName":
		// As the webhook: serviceAccountName, else the deprecated serviceAccount, else "default".
		return "(object.spec.?serviceAccountName.orValue('') != '' ? object.spec.serviceAccountName : " +
			"(object.spec.?serviceAccount.orValue('') != '' ? object.spec.serviceAccount : 'default'))", true
	case strings.HasPrefix(name, "pod.labels."):
		return fmt.Sprintf("object.metadata.?labels[?%s].orValue('')", celQuote(strings.TrimPrefix(name, "pod.labels."))), true
	case strings.HasPrefix(name, "pod.annotations."):
		return celAnnotation(strings.TrimPrefix(name, "pod.annotations.")), true
	case strings.HasPrefix(name, "params."):
		p := strings.TrimPrefix(name, "params.")
		def, ok := v.defaults[p]
		if !ok {
			return "", false
		}
		return fmt.Sprintf("object.metadata.?annotations[?%s].orValue(%s)", celQuote(paramAnnotation(v.template, p)), celQuote(def)), true
	}
	return "", false
}

// str writes s as a CEL string expression: a literal, or the concatenation of its literal parts and the CEL
// for each per-pod value in it. Substitution is plain text, as in the webhook: a value is never expanded again.
func (v *values) str(s string) (string, error) {
	var parts []string
	last := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		if strings.ContainsAny(name, "\"\\<>&") || !isASCII(name) {
			// The webhook substitutes in the JSON encoding, where these characters are escaped: a key holding
			// one would be looked up escaped. Not reproduced.
			return "", fmt.Errorf("per-pod value {{ %s }} names a key with characters that JSON escapes", name)
		}
		e, ok := v.expr(name)
		if !ok {
			return "", fmt.Errorf("unknown per-pod value {{ %s }}", name)
		}
		if m[0] > last {
			parts = append(parts, celQuote(s[last:m[0]]))
		}
		parts = append(parts, e)
		last = m[1]
	}
	if len(parts) == 0 {
		return celQuote(s), nil
	}
	if last < len(s) {
		parts = append(parts, celQuote(s[last:]))
	}
	return "(" + strings.Join(parts, " + ") + ")", nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// literal writes a JSON value (decoded with UseNumber) as a CEL value for a JSON patch. Kubernetes CEL wants
// homogeneous list and map literals, so every element is wrapped in dyn().
func (v *values) literal(x any) (string, error) {
	switch t := x.(type) {
	case nil:
		return "null", nil
	case bool:
		return strconv.FormatBool(t), nil
	case json.Number:
		return t.String(), nil // an integer stays a CEL int, anything else is a CEL double literal
	case string:
		return v.str(t)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			s, err := v.literal(e)
			if err != nil {
				return "", err
			}
			parts[i] = "dyn(" + s + ")"
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			ks, err := v.str(k)
			if err != nil {
				return "", err
			}
			s, err := v.literal(t[k])
			if err != nil {
				return "", err
			}
			parts[i] = ks + ": dyn(" + s + ")"
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	}
	return "", fmt.Errorf("cannot write %T as CEL", x)
}

// jsonValue encodes an API object and decodes it generically, keeping numbers exact. An empty "resources"
// object is dropped, as the webhook does: a pod gets only what the template says.
func jsonValue(obj any) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if r, ok := m["resources"].(map[string]any); ok && len(r) == 0 {
		delete(m, "resources")
	}
	return m, nil
}

// escapeKey escapes a key for a JSON pointer (RFC 6901).
func escapeKey(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// celIdent matches the keys that CEL can select with a dot; any other key can only be a map key.
var celIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// celReserved are words CEL does not accept after a dot.
var celReserved = map[string]bool{"in": true, "as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true, "loop": true, "package": true,
	"namespace": true, "return": true, "var": true, "void": true, "while": true, "true": true, "false": true, "null": true}

// contains writes, as CEL over the value have, the webhook's check that the pod's element holds everything the
// template renders (inject's contains): every key of an object with a value it contains; for a list of objects,
// every element contained in some element of have; any other list equal; scalars equal.
func (v *values) contains(want any, have string, depth int) (string, error) {
	switch w := want.(type) {
	case map[string]any:
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		terms := []string{"true"}
		for _, k := range keys {
			sel, present := have+"."+k, "has("+have+"."+k+")"
			if !celIdent.MatchString(k) || celReserved[k] {
				sel, present = have+"["+celQuote(k)+"]", celQuote(k)+" in "+have
			}
			c, err := v.contains(w[k], sel, depth+1)
			if err != nil {
				return "", err
			}
			terms = append(terms, "("+present+" && "+c+")")
		}
		return strings.Join(terms, " && "), nil
	case []any:
		objects := len(w) > 0
		for _, e := range w {
			if _, ok := e.(map[string]any); !ok {
				objects = false
			}
		}
		if !objects {
			if len(w) == 0 {
				return "size(" + have + ") == 0", nil
			}
			lit, err := v.literal(w)
			if err != nil {
				return "", err
			}
			return have + " == " + lit, nil
		}
		x := fmt.Sprintf("e%d", depth)
		var terms []string
		for _, e := range w {
			c, err := v.contains(e, x, depth+1)
			if err != nil {
				return "", err
			}
			terms = append(terms, fmt.Sprintf("%s.exists(%s, %s)", have, x, c))
		}
		return strings.Join(terms, " && "), nil
	}
	lit, err := v.literal(want)
	if err != nil {
		return "", err
	}
	return have + " == " + lit, nil
}

// sameImage writes inject's sameImage as CEL over the image have: the same repository or one under a mirror's
// prefix, and the same tag (none meaning latest) or digest, or a digest where want has a tag.
func sameImage(want, have string) string {
	repo, digest, _ := strings.Cut(want, "@")
	tag := ""
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	if tag == "" {
		tag = "latest"
	}
	rule := "(p.size() > 1 || (rt[1] == '' ? 'latest' : rt[1]) == " + celQuote(tag) + ")"
	if digest != "" {
		rule = "(p.size() > 1 && p[1] == " + celQuote(digest) + ")"
	}
	// p: [reference, digest] of have; rt: [repository, tag] of the reference.
	return fmt.Sprintf("[%s.split('@')].all(p, [p[0]].map(r, r.lastIndexOf(':') > r.lastIndexOf('/') ? "+
		"[r.substring(0, r.lastIndexOf(':')), r.substring(r.lastIndexOf(':') + 1)] : [r, '']).all(rt, "+
		"(rt[0] == %s || rt[0].endsWith(%s)) && %s))", have, celQuote(repo), celQuote("/"+repo), rule)
}
