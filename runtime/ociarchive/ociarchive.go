// Package ociarchive writes single-layer OCI image archives from a list of
// files, so tests and the demo can build images with no registry and no
// container engine. Output is deterministic: same files, same digests.
package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Image is an image under construction.
type Image struct {
	Ref        string // full reference, e.g. docker.io/clawguard/demo:1
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	entries    map[string]entry
}

type entry struct {
	mode     int64
	data     []byte
	hostPath string
	link     string
	dir      bool
}

// New starts an image named ref.
func New(ref string) *Image {
	return &Image{Ref: ref, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, entries: map[string]entry{}}
}

// File adds a file with the given contents.
func (i *Image) File(p string, mode int64, data []byte) *Image {
	i.entries[clean(p)] = entry{mode: mode, data: data}
	return i
}

// HostFile adds a copy of a host file, read when the archive is written.
func (i *Image) HostFile(p, hostPath string, mode int64) *Image {
	i.entries[clean(p)] = entry{mode: mode, hostPath: hostPath}
	return i
}

// Symlink adds a symbolic link.
func (i *Image) Symlink(p, target string) *Image {
	i.entries[clean(p)] = entry{mode: 0o777, link: target}
	return i
}

// Dir adds a directory.
func (i *Image) Dir(p string, mode int64) *Image {
	i.entries[clean(p)] = entry{mode: mode, dir: true}
	return i
}

// HostTree adds a host directory recursively at p: directories, regular
// files (read when the archive is written) and symbolic links, with their
// permission bits. Other file types are refused.
func (i *Image) HostTree(p, hostDir string) error {
	return filepath.WalkDir(hostDir, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostDir, hp)
		if err != nil {
			return err
		}
		dest := path.Join(p, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(info.Mode().Perm())
		switch {
		case d.IsDir():
			i.Dir(dest, mode)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			i.Symlink(dest, target)
		case d.Type().IsRegular():
			i.HostFile(dest, hp, mode)
		default:
			return fmt.Errorf("image %s: %s is neither a file, a directory nor a link", i.Ref, hp)
		}
		return nil
	})
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// WriteFile writes the archive to a file.
func (i *Image) WriteFile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := i.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Write writes the OCI archive (oci-layout, index.json, blobs) to w.
func (i *Image) Write(w io.Writer) error {
	layer, diffID, err := i.layer()
	if err != nil {
		return err
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": i.Entrypoint, "Cmd": i.Cmd, "Env": i.Env, "WorkingDir": i.WorkingDir, "User": i.User,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	layerDesc := descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)
	configDesc := descriptor("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []any{layerDesc},
	})
	if err != nil {
		return err
	}
	manDesc := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	manDesc["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
	manDesc["annotations"] = map[string]string{
		"io.containerd.image.name":          i.Ref,
		"org.opencontainers.image.ref.name": i.Ref,
	}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manDesc}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + digestHex(layer), layer},
		{"blobs/sha256/" + digestHex(config), config},
		{"blobs/sha256/" + digestHex(manifest), manifest},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layer returns the gzipped layer and the digest of its uncompressed tar.
func (i *Image) layer() ([]byte, string, error) {
	all := map[string]entry{}
	for p, e := range i.entries {
		all[p] = e
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				if _, explicit := i.entries[d]; !explicit {
					all[d] = entry{mode: 0o755, dir: true}
				}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range names {
		e := all[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		data := e.data
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			if e.hostPath != "" {
				b, err := os.ReadFile(e.hostPath)
				if err != nil {
					return nil, "", fmt.Errorf("image %s: %w", i.Ref, err)
				}
				data = b
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
		if len(data) > 0 && h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return nil, "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	diffID := "sha256:" + digestHex(raw.Bytes())
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), diffID, nil
}

func descriptor(mediaType string, data []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": "sha256:" + digestHex(data), "size": len(data)}
}

func digestHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
