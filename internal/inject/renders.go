package inject

import (
	"encoding/binary"
	"sync/atomic"

	"k8s.io/utils/lru"
)

// rendersPerTemplate bounds how many renderings (a template's additions with one set of per-pod values) a
// compiled template keeps. The pods of one workload render alike (a ReplicaSet's pods share their labels and
// annotations, and a pod's name is empty before the API server generates it), and a rollout creates them in a
// burst, so the last two hold what a template mostly sees; what falls out is rendered again, as without a
// cache. The bound keeps memory at scale flat: a full cache costs about 2.4 KB for a scale template
// (BenchmarkCompiledTemplateMemory, full-render-cache-B/template), and only templates that pods render pay it;
// one that no pod renders keeps an empty cache (a pointer).
const rendersPerTemplate = 2

// renderCache keeps a compiled template's latest renderings, keyed by the per-pod values they used
// (Template.renderKey). It belongs to one compiled template: a changed template is compiled again, with a cache
// of its own, so a rendering of an older spec is never served. The copies WithServedByPolicy makes share it,
// as they share base. Concurrent admissions share it: k8s.io/utils/lru locks.
type renderCache struct {
	lru atomic.Pointer[lru.Cache] // made on first use: a template no pod renders pays one pointer
	// last is the rendering served last: the pods of one workload arrive together, and this one is compared
	// without a lock and without making a string of the key.
	last atomic.Pointer[rendering]
}

// rendering is one cached instanceFor result: read-only once cached, like base.
type rendering struct {
	key string
	in  *instance
	// copied is how many bytes the per-pod values copied in: each request checks it against its own
	// MaxRenderedBytes.
	copied int
}

func (c *renderCache) get(key []byte) *rendering {
	if r := c.last.Load(); r != nil && r.key == string(key) {
		return r
	}
	l := c.lru.Load()
	if l == nil {
		return nil
	}
	v, ok := l.Get(string(key))
	if !ok {
		return nil
	}
	r := v.(*rendering)
	c.last.Store(r)
	return r
}

func (c *renderCache) add(r *rendering) {
	l := c.lru.Load()
	if l == nil {
		c.lru.CompareAndSwap(nil, lru.New(rendersPerTemplate))
		l = c.lru.Load()
	}
	l.Add(r.key, r)
	c.last.Store(r)
}

// renderKey appends to key everything a rendering depends on besides the compiled template: whether the pod runs to
// completion (jobInstance) and the value of each per-pod expression the template uses, the namespace
// included (value: the resolver of this rendering). Each value is length-prefixed, so that no two lists of
// values make one key.
func (t *Template) renderKey(key []byte, completes bool, value func(expr string) string) []byte {
	if completes {
		key = append(key, 1)
	} else {
		key = append(key, 0)
	}
	appendValue := func(v string) {
		key = binary.AppendUvarint(key, uint64(len(v)))
		key = append(key, v...)
	}
	appendValue(value(namespaceExpr))
	for _, e := range t.recordable {
		appendValue(value(e))
	}
	return key
}
