package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// NormalizeRef writes an image reference in full (docker.io/library/x:latest),
// the form containerd stores names in.
func NormalizeRef(ref string) (string, error) {
	n, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	return n.String(), nil
}

// Progress receives one line per step of a long image operation.
type Progress func(format string, args ...any)

// EnsureImage makes ref available and unpacked: used as is when present,
// imported from archive when given (an open regular file, read from its
// start; opened by the caller, so whose permissions open it is the
// caller's choice), pulled otherwise. It returns how the image was obtained
// ("present", "imported", "pulled").
func (r *Runtime) EnsureImage(ctx context.Context, ref string, archive *os.File, progress Progress) (string, error) {
	ctx = r.ns(ctx)
	if progress == nil {
		progress = func(string, ...any) {}
	}
	name, err := NormalizeRef(ref)
	if err != nil {
		return "", err
	}
	how := "present"
	img, err := r.client.GetImage(ctx, name)
	switch {
	case err == nil:
	case !errdefs.IsNotFound(err):
		return "", fmt.Errorf("look up image %s: %w", name, err)
	case archive != nil:
		img, err = r.importArchive(ctx, name, archive, progress)
		if err != nil {
			return "", err
		}
		how = "imported"
	default:
		img, err = r.pull(ctx, name, progress)
		if err != nil {
			return "", err
		}
		how = "pulled"
	}
	unpacked, err := img.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return "", fmt.Errorf("image %s: check unpacked: %w", name, err)
	}
	if !unpacked {
		start := time.Now()
		if err := img.Unpack(ctx, r.snapshotter); err != nil {
			return "", fmt.Errorf("unpack image %s: %w", name, err)
		}
		progress("unpacked %s (%s)", name, time.Since(start).Round(time.Millisecond))
	}
	return how, nil
}

func (r *Runtime) importArchive(ctx context.Context, name string, f *os.File, progress Progress) (containerd.Image, error) {
	archive := f.Name()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("import %s: not a regular file", archive)
	}
	start := time.Now()
	imgs, err := r.client.Import(ctx, io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	var found []string
	for _, i := range imgs {
		if i.Name == name {
			progress("imported %s from %s (%s)", name, archive, time.Since(start).Round(time.Millisecond))
			return containerd.NewImage(r.client, i), nil
		}
		found = append(found, i.Name)
	}
	// The archive had other images: they were imported, but the one asked for
	// is not among them.
	return nil, fmt.Errorf("import %s: the archive has no image %s (it has: %s)", archive, name, strings.Join(found, ", "))
}

func (r *Runtime) pull(ctx context.Context, name string, progress Progress) (containerd.Image, error) {
	progress("pulling %s", name)
	start := time.Now()
	img, err := r.client.Pull(ctx, name,
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.snapshotter),
		containerd.WithImageHandler(images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if images.IsLayerType(d.MediaType) {
				progress("  layer %s (%.1f MB)", d.Digest.Encoded()[:12], float64(d.Size)/1e6)
			}
			return nil, nil
		})),
	)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w (no image of that name in containerd namespace %q; import one with image_archive)", name, err, Namespace)
	}
	progress("pulled %s (%s)", name, time.Since(start).Round(time.Millisecond))
	return img, nil
}
