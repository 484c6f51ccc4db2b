package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// item is one thing a template adds to a list, already encoded, with the key that decides whether the pod has
// it (a name, a mount path).
type item struct {
	key string
	raw json.RawMessage
	dyn bool // raw or key holds per-pod values
	// tok is where the service account token mount goes, for a container (containerItem); unknown for the
	// other lists.
	tok tokenSplice
}

// instance is a template's additions for one pod, after per-pod substitution, encoded once.
type instance struct {
	containers     []item
	initContainers []item
	initFirst      []bool // per init container: placed before the pod's own init containers
	volumes        []item
	mounts         []item   // key: mountPath
	mountVolumes   []string // the volume each mount uses
	env            []item   // key: name
	envFrom        []item   // key: the canonical encoding
	pullSecrets    []item   // key: name
	annotations    []string
	annotationVals map[string]string
	labels         []string
	labelVals      map[string]string
	hostAliases    []corev1.HostAlias
	dnsConfig      *corev1.PodDNSConfig
	share          *bool
	hostNetwork    *bool
	hostPID        *bool
	hostIPC        *bool
	// dynNamespaceSettings: hostAliases or dnsConfig hold per-pod values.
	dynNamespaceSettings bool
	// values are the per-pod values this rendering used (Template.valuesUsed), for the record; nil for a
	// template without per-pod values.
	values map[string]string
}

func mustEncode(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil { // API types always encode; a failure here is a programming error
		panic(err)
	}
	return b
}

// encodeContainer encodes a container without the empty "resources":{} that encoding/json always writes for
// corev1.Container (ResourceRequirements is a struct without omitempty): the pod gets only what the template
// says. Container fields are encoded in struct order and resources is never the first, so the first
// occurrence of this exact text is the top-level field (string values cannot contain it unescaped).
func encodeContainer(c *corev1.Container) json.RawMessage {
	return bytes.Replace(mustEncode(c), []byte(`,"resources":{}`), nil, 1)
}

// withTyped puts the typed placeholders of container i of list into its encoding (Compile has checked their
// paths, so setting them cannot fail).
func withTyped(raw json.RawMessage, typed map[string]string, list string, i int) json.RawMessage {
	out, err := v1alpha1.SetContainerPlaceholders(raw, v1alpha1.ContainerPlaceholders(typed, list, i))
	if err != nil {
		panic(fmt.Sprintf("inject: typed placeholders of %s[%d] after Compile checked them: %v", list, i, err))
	}
	return out
}

// newInstance encodes what the template adds. place decides which init containers go before the pod's own
// (initFirst); under Auto the author's order is kept: those up to and including the last native sidecar go
// before, the rest after (a mesh's [iptables init, proxy] must not have its iptables step run last). The last
// converted init containers are the template's containers turned into native sidecars for a pod that runs to
// completion (jobPolicy Native): not the author's init containers, so they never move those, and they go where
// native sidecars go. Compile passes 0 and builds that form from base when a pod needs it (asNativeSidecars);
// the tests check it against this encoding of the converted spec.
func newInstance(p *payload, place v1alpha1.InitContainerPlacement, converted int) *instance {
	in := &instance{
		annotationVals: p.Annotations, annotations: slices.Sorted(maps.Keys(p.Annotations)),
		labelVals: p.Labels, labels: slices.Sorted(maps.Keys(p.Labels)),
		hostAliases: p.HostAliases, dnsConfig: p.DNSConfig.PodDNSConfig(),
		share: p.ShareProcessNamespace, hostNetwork: p.HostNetwork, hostPID: p.HostPID, hostIPC: p.HostIPC,
	}
	for i := range p.Containers {
		raw := withTyped(encodeContainer(&p.Containers[i]), p.TypedPlaceholders, "containers", i)
		in.containers = append(in.containers, containerItem(p.Containers[i].Name, raw))
	}
	own := p.InitContainers[:len(p.InitContainers)-converted]
	lastNative := -1
	for i := range own {
		if own[i].RestartPolicy != nil && *own[i].RestartPolicy == corev1.ContainerRestartPolicyAlways {
			lastNative = i
		}
	}
	for i := range p.InitContainers {
		c := &p.InitContainers[i]
		raw := withTyped(encodeContainer(c), p.TypedPlaceholders, "initContainers", i)
		in.initContainers = append(in.initContainers, containerItem(c.Name, raw))
		first := place == v1alpha1.InitContainerPlacementFirst
		if place == v1alpha1.InitContainerPlacementAuto {
			first = i <= lastNative || i >= len(own)
		}
		in.initFirst = append(in.initFirst, first)
	}
	for i := range p.Volumes {
		in.volumes = append(in.volumes, item{key: p.Volumes[i].Name, raw: mustEncode(&p.Volumes[i])})
	}
	for i := range p.VolumeMounts {
		in.mounts = append(in.mounts, item{key: p.VolumeMounts[i].MountPath, raw: mustEncode(&p.VolumeMounts[i])})
		in.mountVolumes = append(in.mountVolumes, p.VolumeMounts[i].Name)
	}
	for i := range p.Env {
		in.env = append(in.env, item{key: p.Env[i].Name, raw: mustEncode(&p.Env[i])})
	}
	for i := range p.EnvFrom {
		raw := mustEncode(&p.EnvFrom[i])
		in.envFrom = append(in.envFrom, item{key: string(raw), raw: raw})
	}
	for i := range p.ImagePullSecrets {
		in.pullSecrets = append(in.pullSecrets, item{key: p.ImagePullSecrets[i].Name, raw: mustEncode(&p.ImagePullSecrets[i])})
	}
	for _, list := range [][]item{in.containers, in.initContainers, in.volumes, in.mounts, in.env, in.envFrom, in.pullSecrets} {
		for i := range list {
			list[i].dyn = hasPlaceholder(list[i].raw) || hasPlaceholder(list[i].key)
		}
	}
	if len(p.HostAliases) > 0 || p.DNSConfig != nil {
		in.dynNamespaceSettings = hasPlaceholder(mustEncode(map[string]any{"hostAliases": p.HostAliases, "dnsConfig": p.DNSConfig}))
	}
	return in
}

// asNativeSidecars is base for a pod that runs to completion under jobPolicy Native: its containers become
// native sidecars (init containers with restartPolicy Always) after its own init containers, which the kubelet
// stops once the application's containers have exited, so the pod can complete. They go where native sidecars
// go (before the pod's own init containers, but under Last). Everything else is base's own, shared: an
// instance is read-only. The result is exactly what encoding the converted containers from the spec gives
// (TestTheJobFormIsTheOneEncodedFromTheSpec): each container's encoding is decoded as what it was encoded from
// (a corev1.Container, or the map that typed placeholders were put into) and encoded again with the policy.
func asNativeSidecars(base *instance, place v1alpha1.InitContainerPlacement, typed []bool) *instance {
	job := *base
	job.containers = nil
	job.initContainers = slices.Clone(base.initContainers)
	job.initFirst = slices.Clone(base.initFirst)
	for i, c := range base.containers {
		raw := restartAlways(c.raw, i < len(typed) && typed[i])
		it := containerItem(c.key, raw)
		it.dyn = hasPlaceholder(raw) || hasPlaceholder(c.key)
		job.initContainers = append(job.initContainers, it)
		job.initFirst = append(job.initFirst, place != v1alpha1.InitContainerPlacementLast)
	}
	return &job
}

// restartAlways returns an encoded container with restartPolicy Always. typed: the encoding holds typed
// placeholders (withTyped), i.e. it is a map's, keys sorted, and strings where numbers go.
func restartAlways(raw json.RawMessage, typed bool) json.RawMessage {
	if typed {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // numbers are written back as they were read
		var c map[string]any
		if err := dec.Decode(&c); err != nil {
			panic(fmt.Sprintf("inject: a container encoded by newInstance does not decode: %v", err))
		}
		c["restartPolicy"] = corev1.ContainerRestartPolicyAlways
		return mustEncode(c)
	}
	var c corev1.Container
	if err := json.Unmarshal(raw, &c); err != nil {
		panic(fmt.Sprintf("inject: a container encoded by newInstance does not decode: %v", err))
	}
	always := corev1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return encodeContainer(&c)
}
