package inject

import (
	"bytes"
	"encoding/json"
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

// newInstance encodes what the template adds. place decides which init containers go before the pod's own
// (initFirst); under Auto the author's order is kept: those up to and including the last native sidecar go
// before, the rest after (a mesh's [iptables init, proxy] must not have its iptables step run last). The last
// converted init containers are the template's containers turned into native sidecars for a pod that runs to
// completion (jobPolicy Native, see jobPayload): not the author's init containers, so they never move those,
// and they go where native sidecars go.
func newInstance(p *payload, place v1alpha1.InitContainerPlacement, converted int) *instance {
	in := &instance{
		annotationVals: p.Annotations, annotations: slices.Sorted(maps.Keys(p.Annotations)),
		labelVals: p.Labels, labels: slices.Sorted(maps.Keys(p.Labels)),
		hostAliases: p.HostAliases, dnsConfig: p.DNSConfig,
		share: p.ShareProcessNamespace, hostNetwork: p.HostNetwork, hostPID: p.HostPID, hostIPC: p.HostIPC,
	}
	for i := range p.Containers {
		in.containers = append(in.containers, item{key: p.Containers[i].Name, raw: encodeContainer(&p.Containers[i])})
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
		in.initContainers = append(in.initContainers, item{key: c.Name, raw: encodeContainer(c)})
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
