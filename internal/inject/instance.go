package inject

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
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
	native         []bool // per init container: restartPolicy Always
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

func newInstance(p *payload) *instance {
	in := &instance{
		annotationVals: p.Annotations, annotations: slices.Sorted(maps.Keys(p.Annotations)),
		labelVals: p.Labels, labels: slices.Sorted(maps.Keys(p.Labels)),
		hostAliases: p.HostAliases, dnsConfig: p.DNSConfig,
		share: p.ShareProcessNamespace, hostNetwork: p.HostNetwork, hostPID: p.HostPID, hostIPC: p.HostIPC,
	}
	for i := range p.Containers {
		in.containers = append(in.containers, item{key: p.Containers[i].Name, raw: encodeContainer(&p.Containers[i])})
	}
	for i := range p.InitContainers {
		c := &p.InitContainers[i]
		in.initContainers = append(in.initContainers, item{key: c.Name, raw: encodeContainer(c)})
		in.native = append(in.native, c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways)
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
