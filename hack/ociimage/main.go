// Command ociimage assembles a container image from static binaries with go-containerregistry, without a Docker
// engine, and writes it as an OCI image-layout tarball that `ctr images import` and `docker load` (with
// containerd's image store) read:
//
//	go run ./hack/ociimage -o bin/images/sidecar-injector.tar -ref localhost/sidecar-injector:dev \
//	    -binary linux/amd64=bin/image/linux_amd64/sidecar-injector \
//	    -binary linux/arm64=bin/image/linux_arm64/sidecar-injector \
//	    -path /sidecar-injector -user 65532:65532 -cmd serve -label org.opencontainers.image.version=dev
//
// The image has one layer: the binary at -path, owned by root and executable by everyone. Every timestamp is
// SOURCE_DATE_EPOCH (0 when unset) and nothing depends on the machine, so the same binaries give the same digest.
// The digest of the image index is printed on stdout.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// containerdImageName is the annotation containerd's importer names the image by (a full reference).
const containerdImageName = "io.containerd.image.name"

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	out, ref, path, user string
	binaries, labels     listFlag
	cmd, ports, env      listFlag
	created              time.Time
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", "", "the OCI image-layout tarball to write (required)")
	flag.StringVar(&o.ref, "ref", "", "the image reference recorded in the tarball, e.g. localhost/app:v1 (required)")
	flag.StringVar(&o.path, "path", "", "where the binary goes in the image, also the entrypoint (default /<binary name>)")
	flag.StringVar(&o.user, "user", "65532:65532", "the user:group the image runs as")
	flag.Var(&o.binaries, "binary", "OS/ARCH=FILE: a static binary for one platform (repeat for each platform)")
	flag.Var(&o.labels, "label", "KEY=VALUE: an image label (repeatable)")
	flag.Var(&o.cmd, "cmd", "an argument of the image's default command (repeatable)")
	flag.Var(&o.ports, "port", "a TCP port the image exposes (repeatable)")
	flag.Var(&o.env, "env", "KEY=VALUE: an environment variable of the image (repeatable)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.out == "" || o.ref == "" || len(o.binaries) == 0 {
		return errors.New("-o, -ref and at least one -binary are required")
	}
	ref, err := name.NewTag(o.ref)
	if err != nil {
		return fmt.Errorf("-ref %q is not an image reference with a tag: %w", o.ref, err)
	}
	if o.created, err = sourceDateEpoch(); err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range o.binaries {
		platform, file, ok := strings.Cut(b, "=")
		if !ok {
			return fmt.Errorf("-binary %q: want OS/ARCH=FILE", b)
		}
		p, err := v1.ParsePlatform(platform)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("-binary %q: %q is not OS/ARCH", b, platform)
		}
		img, err := platformImage(o, *p, file)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := writeLayoutTar(o.out, idx, ref); err != nil {
		return err
	}
	fmt.Println(digest)
	return nil
}

// sourceDateEpoch is the time every timestamp of the image gets: $SOURCE_DATE_EPOCH, or the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(s, 0).UTC(), nil
}

// platformImage is the image of one platform: one layer holding the binary, and the config.
func platformImage(o options, p v1.Platform, file string) (v1.Image, error) {
	bin, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the binary for %s: %w", p, err)
	}
	path := o.path
	if path == "" {
		path = "/" + filepath.Base(file)
	}
	layerTar, err := binaryLayer(strings.TrimPrefix(path, "/"), bin, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "ociimage: " + path}}); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: o.created}
	cf.Config = v1.Config{
		User:         o.user,
		Entrypoint:   []string{path},
		Cmd:          o.cmd,
		Env:          append([]string{"PATH=/"}, o.env...),
		Labels:       map[string]string{},
		ExposedPorts: map[string]struct{}{},
	}
	for _, l := range o.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("-label %q: want KEY=VALUE", l)
		}
		cf.Config.Labels[k] = v
	}
	for _, port := range o.ports {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("-port %q is not a port number", port)
		}
		cf.Config.ExposedPorts[port+"/tcp"] = struct{}{}
	}
	return mutate.ConfigFile(img, cf)
}

// binaryLayer is an uncompressed tar holding the binary at path (its parent directories included), with fixed
// owners, modes and times.
func binaryLayer(path string, bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := strings.Split(filepath.Dir(path), "/")
	for i := range dirs {
		if dirs[i] == "." {
			break
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(dirs[:i+1], "/") + "/",
			Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o755, Size: int64(len(bin)),
		ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayoutTar writes idx as an OCI image layout (named ref for containerd and for OCI tools) into a tarball
// at out, atomically: a failed run leaves any previous tarball in place.
func writeLayoutTar(out string, idx v1.ImageIndex, ref name.Tag) error {
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// containerd and the kubelet spell Docker Hub docker.io; go-containerregistry spells it index.docker.io.
	full := ref.Name()
	if rest, ok := strings.CutPrefix(full, name.DefaultRegistry+"/"); ok {
		full = "docker.io/" + rest
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		containerdImageName:                 full,
		"org.opencontainers.image.ref.name": ref.TagStr(),
	})); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarDir(dir, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// tarDir writes the files under dir into a tar at out, sorted by name, with fixed owners, modes and times, so
// the tarball itself is reproducible too.
func tarDir(dir, out string) error {
	var files []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}); err != nil {
		return err
	}
	sort.Strings(files)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Close()
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o644,
			Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
