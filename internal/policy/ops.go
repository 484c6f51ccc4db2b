package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func patchOp(op, path, value string) string {
	return fmt.Sprintf("JSONPatch{op: %s, path: %s, value: %s}", celQuote(op), path, value)
}

// addOps writes the template's patch as CEL lists of JSONPatch, in the order they must apply: first the
// operations that address the pod's containers by index (env and mounts), then insertions into lists, so that
// every index refers to the pod as this mutation found it.
func (u *unit) addOps(earlier []*unit, serves pods) error {
	if err := u.metadataOps(); err != nil {
		return err
	}
	if err := u.appOps(); err != nil {
		return err
	}
	if err := u.containerOps(earlier, serves); err != nil {
		return err
	}
	if err := u.initOps(earlier, serves); err != nil {
		return err
	}
	if err := u.listOps("volumes", func(i int) any { return &u.spec.Volumes[i] }, len(u.spec.Volumes)); err != nil {
		return err
	}
	if err := u.pullSecretOps(); err != nil {
		return err
	}
	for _, b := range u.bools() {
		u.ops = append(u.ops, fmt.Sprintf("(has(object.spec.%s) ? [] : [%s])", b.field, patchOp("add", celQuote("/spec/"+b.field), fmt.Sprint(b.want))))
	}
	return nil
}

// metadataOps adds the template's labels and annotations the pod does not have, and the record.
func (u *unit) metadataOps() error {
	labels, err := u.mapOps("labels", u.spec.Labels, "")
	if err != nil {
		return err
	}
	if labels != "" {
		u.ops = append(u.ops, labels)
	}
	record := celAnnotation(v1alpha1.AnnotationStatus)
	fresh, err := json.Marshal(inject.Status{Templates: []inject.StatusEntry{}})
	if err != nil {
		return err
	}
	empty := string(fresh)                                   // {"templates":[]}
	only := strings.TrimSuffix(empty, "]}") + u.entry + "]}" // a record naming this template only
	prefix := strings.TrimSuffix(empty, "]}")                // {"templates":[
	// The record is read once ([x].map(s, ...)[0] binds it: this CEL has no cel.bind). In a record the webhook or
	// an earlier mutation wrote, an entry of this template is replaced in place (entries hold no braces: the
	// first '}' after it ends it), else this template's entry is appended; anything else is replaced whole, as
	// the webhook replaces a record it cannot read.
	merged := fmt.Sprintf("[%s].map(s, !(s.startsWith(%s) && s.endsWith(']}')) || s == %s ? %s : "+
		"(s.contains(%s) ? [s.indexOf(%s)].map(i, s.substring(0, i) + %s + s.substring(s.indexOf('}', i) + 1))[0] : "+
		"s.substring(0, s.size() - 2) + ',' + %s + ']}'))[0]",
		record, celQuote(prefix), celQuote(empty), celQuote(only),
		celQuote(u.entryPrefix), celQuote(u.entryPrefix), celQuote(u.entry), celQuote(u.entry))
	annotations, err := u.mapOps("annotations", u.spec.Annotations, merged)
	if err != nil {
		return err
	}
	u.ops = append(u.ops, annotations)
	return nil
}

// mapOps adds the keys of m the pod does not have to metadata.<field>. record, when set, is the CEL for the new
// sidecar.dev/status value (annotations only): it replaces the pod's record, or is added with the rest.
func (u *unit) mapOps(field string, m map[string]string, record string) (string, error) {
	if len(m) == 0 && record == "" {
		return "", nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	base := "/metadata/" + field
	var each, whole []string
	for _, k := range keys {
		v, err := u.v.str(m[k])
		if err != nil {
			return "", err
		}
		each = append(each, fmt.Sprintf("(%s in object.metadata.%s ? [] : [%s])", celQuote(k), field,
			patchOp("add", celQuote(base+"/"+escapeKey(k)), v)))
		whole = append(whole, celQuote(k)+": "+v)
	}
	if record != "" {
		status := v1alpha1.AnnotationStatus
		each = append(each, fmt.Sprintf("[%s]", patchOp("add", celQuote(base+"/"+escapeKey(status)), record)))
		whole = append(whole, celQuote(status)+": "+record)
	}
	return fmt.Sprintf("(has(object.metadata.%s) ? %s : [%s])", field, strings.Join(each, " + "),
		patchOp("add", celQuote(base), "{"+strings.Join(whole, ", ")+"}")), nil
}

// appOps adds the template's env vars and volume mounts to each target container that does not have them
// (by name, by mount path): the pod's containers, and the init containers targetContainers names.
func (u *unit) appOps() error {
	for _, l := range []struct {
		field string
		n     int
		item  func(i int) (any, string)
	}{
		{"env", len(u.spec.Env), func(i int) (any, string) { return &u.spec.Env[i], u.spec.Env[i].Name }},
		{"volumeMounts", len(u.spec.VolumeMounts), func(i int) (any, string) {
			return &u.spec.VolumeMounts[i], u.spec.VolumeMounts[i].MountPath
		}},
	} {
		if l.n == 0 {
			continue
		}
		keyField := map[string]string{"env": "name", "volumeMounts": "mountPath"}[l.field]
		var items []string
		for i := range l.n {
			obj, _ := l.item(i)
			lit, err := u.item(obj)
			if err != nil {
				return err
			}
			items = append(items, lit)
		}
		missing := fmt.Sprintf("[%s].filter(e, !c.?%s.orValue([]).exists(x, x.%s == e.%s))", strings.Join(items, ", "), l.field, keyField, keyField)
		ops := func(list string) string {
			path := fmt.Sprintf("'/spec/%s/' + string(i) + '/%s'", list, l.field)
			return fmt.Sprintf("[%s].map(m, has(c.%s) ? m.map(e, %s) : (m.size() > 0 ? [%s] : []))[0]", missing, l.field,
				patchOp("add", path+" + '/-'", "e"), patchOp("add", path, "m"))
		}
		u.ops = append(u.ops, fmt.Sprintf("object.spec.containers.transformList(i, c, %s, %s).flatten()", u.target("c"), ops("containers")))
		if len(u.spec.TargetContainers) > 0 {
			// Init containers only when named, and never one a template added (the record names it).
			u.ops = append(u.ops, fmt.Sprintf("object.spec.?initContainers.orValue([]).transformList(i, c, (c.name in %s && !%s), %s).flatten()",
				celStringList(u.spec.TargetContainers), recordedIn("initContainers", "c"), ops("initContainers")))
		}
	}
	return nil
}

// item writes one API object as a CEL literal with the template's per-pod values.
func (u *unit) item(obj any) (string, error) {
	m, err := jsonValue(obj)
	if err != nil {
		return "", err
	}
	return u.v.literal(m)
}

// containerOps appends the template's containers, or puts them in front of the pod's own, behind those of the
// templates before it in injection order that did the same.
func (u *unit) containerOps(earlier []*unit, serves pods) error {
	cs := u.spec.Containers
	if len(cs) == 0 {
		return nil
	}
	var ops []string
	first := u.spec.ContainerPlacement == v1alpha1.ContainerPlacementFirst
	at := frontIndex(earlier, serves, func(e *unit) int { return e.firstContainers })
	for i := range cs {
		lit, err := u.item(&cs[i])
		if err != nil {
			return err
		}
		path := "'/spec/containers/-'"
		if first {
			path = fmt.Sprintf("'/spec/containers/' + string(%s + %d)", at, i)
		}
		ops = append(ops, patchOp("add", path, lit))
	}
	if first {
		u.firstContainers = len(cs)
	}
	u.ops = append(u.ops, "["+strings.Join(ops, ", ")+"]")
	return nil
}

// frontIndex is the CEL for where a template's front items go: behind the front items of every earlier template
// that the pod carries (its record names it). An earlier template with a job variant put other items in front
// of a pod that runs to completion: serves says which of its variants the pod met.
func frontIndex(earlier []*unit, serves pods, count func(*unit) int) string {
	term := func(e *unit) string {
		if n := count(e); n > 0 {
			return fmt.Sprintf("(%s ? %d : 0)", e.recorded, n)
		}
		return "0"
	}
	terms := []string{"0"}
	for _, e := range earlier {
		t := term(e)
		switch {
		case e.job != nil && serves == completingPods:
			t = term(e.job)
		case e.job != nil && serves == allPods:
			if j := term(e.job); j != t {
				t = fmt.Sprintf("(%s ? %s : %s)", completes, j, t)
			}
		}
		if t != "0" {
			terms = append(terms, t)
		}
	}
	return "(" + strings.Join(terms, " + ") + ")"
}

// initOps adds the template's init containers as the engine places them: under Auto those up to and including
// the last native sidecar in front of the pod's own (the author's order kept), the rest behind, and the
// containers a job variant turned into native sidecars in front; all of them in front under First, behind under
// Last.
func (u *unit) initOps(earlier []*unit, serves pods) error {
	cs := u.spec.InitContainers
	if len(cs) == 0 {
		return nil
	}
	place := u.spec.InitContainerPlacement
	own := len(cs) - u.converted
	lastNative := -1
	for i := range own {
		if cs[i].RestartPolicy != nil && *cs[i].RestartPolicy == corev1.ContainerRestartPolicyAlways {
			lastNative = i
		}
	}
	var front, back []string
	for i := range cs {
		lit, err := u.item(&cs[i])
		if err != nil {
			return err
		}
		// The template's containers turned native sidecars (the last u.converted) go where native sidecars go.
		if place == v1alpha1.InitContainerPlacementFirst || (place != v1alpha1.InitContainerPlacementLast && (i <= lastNative || i >= own)) {
			front = append(front, lit)
		} else {
			back = append(back, lit)
		}
	}
	at := frontIndex(earlier, serves, func(e *unit) int { return e.firstInits })
	var each []string
	for i, lit := range front {
		each = append(each, patchOp("add", fmt.Sprintf("'/spec/initContainers/' + string(%s + %d)", at, i), lit))
	}
	for _, lit := range back {
		each = append(each, patchOp("add", "'/spec/initContainers/-'", lit))
	}
	u.firstInits = len(front)
	whole := patchOp("add", "'/spec/initContainers'", "["+strings.Join(append(front, back...), ", ")+"]")
	u.ops = append(u.ops, fmt.Sprintf("(has(object.spec.initContainers) ? [%s] : [%s])", strings.Join(each, ", "), whole))
	return nil
}

// listOps appends items to a pod list, creating it whole when the pod has none.
func (u *unit) listOps(field string, item func(i int) any, n int) error {
	if n == 0 {
		return nil
	}
	var lits []string
	for i := range n {
		lit, err := u.item(item(i))
		if err != nil {
			return err
		}
		lits = append(lits, lit)
	}
	var each []string
	for _, lit := range lits {
		each = append(each, patchOp("add", celQuote("/spec/"+field+"/-"), lit))
	}
	u.ops = append(u.ops, fmt.Sprintf("(has(object.spec.%s) ? [%s] : [%s])", field, strings.Join(each, ", "),
		patchOp("add", celQuote("/spec/"+field), "["+strings.Join(lits, ", ")+"]")))
	return nil
}

// pullSecretOps adds the image pull secrets the pod does not name yet.
func (u *unit) pullSecretOps() error {
	ps := u.spec.ImagePullSecrets
	if len(ps) == 0 {
		return nil
	}
	var items []string
	for i := range ps {
		lit, err := u.item(&ps[i])
		if err != nil {
			return err
		}
		items = append(items, lit)
	}
	missing := fmt.Sprintf("[%s].filter(e, !object.spec.?imagePullSecrets.orValue([]).exists(x, x.name == e.name))", strings.Join(items, ", "))
	u.ops = append(u.ops, fmt.Sprintf("[%s].map(m, has(object.spec.imagePullSecrets) ? m.map(e, %s) : (m.size() > 0 ? [%s] : []))[0]",
		missing, patchOp("add", "'/spec/imagePullSecrets/-'", "e"), patchOp("add", "'/spec/imagePullSecrets'", "m")))
	return nil
}
