package inject

import (
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/api/resource"
	kjson "sigs.k8s.io/json"
)

// ImageTolerance is what the platform declares that its image policy (a mirroring or pinning webhook, a
// registry proxy) may do to a sidecar's image after this injector rendered it. The zero value tolerates
// nothing: the pod's image must be exactly the rendered one. It is the platform's to declare (serve's
// --image-mirrors and --allow-digest-pinning), never something a pod can claim.
type ImageTolerance struct {
	// Mirrors are registry prefixes that may replace the registry of the template's image:
	// "mirror.example/dockerhub" lets fluent/fluent-bit:3.2 appear as mirror.example/dockerhub/fluent/fluent-bit:3.2
	// (or .../library/nginx for nginx). Only these, and only as the whole prefix.
	Mirrors []string
	// DigestPinning lets an image the template names by tag appear pinned to a digest: repo:tag@sha256:… or
	// repo@sha256:…, the tag kept or dropped but never another one.
	DigestPinning bool
}

// imageAllowed reports whether the pod's image (have) is the template's rendered image (want), as the declared
// tolerance lets the platform rewrite it.
func (t ImageTolerance) imageAllowed(want, have string) bool {
	if have == want {
		return true
	}
	wRepo, wTag, wDigest := splitImage(want)
	hRepo, hTag, hDigest := splitImage(have)
	if hRepo != wRepo && !t.mirrored(wRepo, hRepo) {
		return false
	}
	switch {
	case hDigest == wDigest:
		return hTag == wTag // a mirror only: the rest is as rendered
	case wDigest != "":
		return false // the template pins a digest itself: no other one
	default: // the platform pinned a tag to a digest
		return t.DigestPinning && validDigest(hRepo, hDigest) && (hTag == wTag || hTag == "")
	}
}

// mirrored reports whether repo have is want's repository under one of the declared mirrors.
func (t ImageTolerance) mirrored(want, have string) bool {
	if len(t.Mirrors) == 0 {
		return false
	}
	paths := []string{want}
	if i := strings.IndexByte(want, '/'); i > 0 && strings.ContainsAny(want[:i], ".:") || strings.HasPrefix(want, "localhost/") {
		paths[0] = want[i+1:] // the registry the template names is what a mirror replaces
	}
	if ref, err := name.NewRepository(want, name.WeakValidation); err == nil && ref.RepositoryStr() != paths[0] {
		paths = append(paths, ref.RepositoryStr()) // Docker Hub's canonical form: library/nginx for nginx
	}
	for _, m := range t.Mirrors {
		for _, p := range paths {
			if have == strings.TrimSuffix(m, "/")+"/"+p {
				return true
			}
		}
	}
	return false
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$|^sha512:[0-9a-f]{128}$`)

// validDigest reports whether digest is a well-formed content digest for repo (go-containerregistry parses it).
func validDigest(repo, digest string) bool {
	if !digestRE.MatchString(digest) {
		return false
	}
	_, err := name.NewDigest(repo+"@"+digest, name.WeakValidation)
	return err == nil
}

func splitImage(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// rendersAs reports whether the pod's element of list named name is what the template renders (it): the same
// fields with the same values, no more and no fewer, up to what the API server and the platform legitimately
// change after this injector:
//
//   - fields the API server defaults, with their default value (apiServerDefaults), and imagePullPolicy
//     Always or IfNotPresent (the default depends on the image, which the platform may have rewritten);
//   - resources: what the template sets must be there, with equal quantities; LimitRange admission (and the
//     API server's requests-from-limits default) may add more;
//   - the service account token mount, which the ServiceAccount admission plugin adds to every container;
//   - the image, only as ImageTolerance declares.
//
// Everything else differs: another image, an extra command or args, another or an extra env var or mount. So a
// pod cannot bring a look-alike container with a copied record and have it pass for the template's sidecar.
func (s *state) rendersAs(list, name string, it item) bool {
	have, ok := s.podElement(list, name)
	if !ok {
		return false
	}
	var want map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(it.raw, &want); err != nil {
		return false
	}
	if list != "volumes" {
		wantImage, _ := want["image"].(string)
		haveImage, _ := have["image"].(string)
		if !s.images.imageAllowed(wantImage, haveImage) || !resourcesContained(want["resources"], have["resources"]) {
			return false
		}
		if !pullPolicyAllowed(want["imagePullPolicy"], have["imagePullPolicy"]) {
			return false
		}
		have = withoutKeys(have, "image", "resources", "imagePullPolicy")
		want = withoutKeys(want, "image", "resources", "imagePullPolicy")
		if mounts, ok := have["volumeMounts"].([]any); ok {
			if rest := withoutTokenMount(mounts, want["volumeMounts"]); len(rest) > 0 {
				have["volumeMounts"] = rest
			} else {
				delete(have, "volumeMounts")
			}
		}
	}
	return sameUpToDefaults(want, have)
}

// pullPolicyAllowed: the template's imagePullPolicy exactly, or where it sets none the API server's default,
// Always or IfNotPresent (which one depends on the image's tag, which the platform may have pinned).
func pullPolicyAllowed(want, have any) bool {
	if want != nil || have == nil {
		return want == have
	}
	return have == "Always" || have == "IfNotPresent"
}

// podElement returns the pod's element of list (containers, initContainers, volumes) named name, decoding the
// pod's lists once per admission.
func (s *state) podElement(list, name string) (map[string]any, bool) {
	if s.rawElems == nil {
		var pod struct {
			Spec struct {
				Containers     []map[string]any `json:"containers"`
				InitContainers []map[string]any `json:"initContainers"`
				Volumes        []map[string]any `json:"volumes"`
			} `json:"spec"`
		}
		_ = kjson.UnmarshalCaseSensitivePreserveInts(s.raw, &pod) // read once already: it decodes
		s.rawElems = map[string]map[string]map[string]any{}
		for l, elems := range map[string][]map[string]any{"containers": pod.Spec.Containers,
			"initContainers": pod.Spec.InitContainers, "volumes": pod.Spec.Volumes} {
			s.rawElems[l] = map[string]map[string]any{}
			for _, e := range elems {
				if n, ok := e["name"].(string); ok {
					s.rawElems[l][n] = e
				}
			}
		}
	}
	e, ok := s.rawElems[list][name]
	return e, ok
}

// apiServerDefaults are the fields of a container or volume that the API server fills in when they are absent,
// with the value it fills in (k8s.io/kubernetes pkg/apis/core/v1 defaults.go; k8s.io/api carries no defaulting
// to import). Each key is tolerated wherever it appears in the element, and only with this value: present or
// absent, the field then means the same. The keys name these fields only, in containers and volumes.
var apiServerDefaults = map[string]any{
	"terminationMessagePath":   "/dev/termination-log",
	"terminationMessagePolicy": "File",
	"protocol":                 "TCP",        // ports
	"scheme":                   "HTTP",       // probes' and lifecycle hooks' httpGet
	"timeoutSeconds":           int64(1),     // probes
	"periodSeconds":            int64(10),    // probes
	"successThreshold":         int64(1),     // probes
	"failureThreshold":         int64(3),     // probes
	"apiVersion":               "v1",         // env's and downwardAPI's fieldRef
	"defaultMode":              int64(0o644), // configMap, secret, downwardAPI and projected volumes
	"expirationSeconds":        int64(3600),  // projected serviceAccountToken
	"type":                     "",           // hostPath
	"path":                     "/",          // probes' and lifecycle hooks' httpGet
}

// serviceAccountTokenPath is where the ServiceAccount admission plugin mounts the pod's API token into every
// container (also into one a webhook added, when the API server re-runs the plugins after it).
const serviceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// withoutTokenMount returns the pod's mounts without the service account token mount, unless the template
// mounts that path itself.
func withoutTokenMount(have []any, want any) []any {
	if w, ok := want.([]any); ok && slices.ContainsFunc(w, isTokenMount) {
		return have
	}
	return slices.DeleteFunc(slices.Clone(have), isTokenMount)
}

func isTokenMount(m any) bool {
	mm, ok := m.(map[string]any)
	return ok && mm["mountPath"] == serviceAccountTokenPath && mm["readOnly"] == true
}

// withoutKeys returns a copy of m without the keys.
func withoutKeys(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}

// sameUpToDefaults reports whether have is want, up to apiServerDefaults: objects with the same keys (a key
// only have holds must be a default with its value; a null value is an absent key), lists of the same length
// with the same elements in the same order, equal scalars.
func sameUpToDefaults(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			if hv, ok := h[k]; wv != nil && (!ok || !sameUpToDefaults(wv, hv)) {
				return false
			}
		}
		for k, hv := range h {
			if _, ok := w[k]; ok || hv == nil {
				continue
			}
			if d, ok := apiServerDefaults[k]; !ok || !reflect.DeepEqual(d, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !sameUpToDefaults(w[i], h[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(want, have)
}

// resourcesContained reports whether the pod's resources (have) hold every quantity the template sets (want),
// equal as quantities; more is allowed (LimitRange, requests defaulted from limits).
func resourcesContained(want, have any) bool {
	w, _ := want.(map[string]any)
	h, _ := have.(map[string]any)
	for kind, wv := range w { // limits, requests, claims
		wl, ok := wv.(map[string]any)
		if !ok {
			if !reflect.DeepEqual(wv, h[kind]) {
				return false
			}
			continue
		}
		hl, _ := h[kind].(map[string]any)
		for res, q := range wl {
			if !sameQuantity(q, hl[res]) {
				return false
			}
		}
	}
	return true
}

func sameQuantity(want, have any) bool {
	ws, ok1 := want.(string)
	hs, ok2 := have.(string)
	if !ok1 || !ok2 {
		return reflect.DeepEqual(want, have)
	}
	wq, err1 := resource.ParseQuantity(ws)
	hq, err2 := resource.ParseQuantity(hs)
	return err1 == nil && err2 == nil && wq.Cmp(hq) == 0
}
