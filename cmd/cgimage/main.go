// Command cgimage builds the local OCI image archives clawguard's demo and
// tests run, from files already on the host (busybox-static, the host's node
// and its libraries, the cgprobe helper): no registry, no container engine.
//
//	cgimage -ref docker.io/clawguard/demo:1 -o demo.tar -probe bin/cgprobe [-node /usr/bin/node] [-bin /usr/bin/iperf3]
//	        [-file DEST=SRC] [-tree DEST=DIR] [-link DEST=TARGET] [-workdir DIR] [-cmd ARG]...
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/clawguard/clawguard/runtime/ociarchive"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, " ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		ref     = flag.String("ref", "", "image reference to name the image (required)")
		out     = flag.String("o", "", "output archive (required)")
		probe   = flag.String("probe", "", "cgprobe binary to install at /usr/local/bin/cgprobe")
		busybox = flag.String("busybox", "/bin/busybox", "static busybox to install with its applets; empty for an image with no shell")
		node    = flag.String("node", "", "node binary to install at /usr/bin/node, with the shared libraries it links")
		workdir = flag.String("workdir", "/workspace", "the image's working directory")
		files   multi
		bins    multi
		cmd     multi
		trees   multi
		links   multi
	)
	flag.Var(&bins, "bin", "host binary to install at the same path, with the shared libraries it links (repeatable)")
	flag.Var(&files, "file", "DEST=SRC[:MODE] host file to add (repeatable)")
	flag.Var(&cmd, "cmd", "image command, one argument per flag (repeatable)")
	flag.Var(&trees, "tree", "DEST=DIR host directory to add recursively (repeatable)")
	flag.Var(&links, "link", "DEST=TARGET symbolic link to add (repeatable)")
	flag.Parse()
	if *ref == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *node != "" {
		bins = append(bins, *node+"=usr/bin/node")
	}
	img := ociarchive.New(*ref)
	img.Cmd, img.WorkingDir = cmd, *workdir
	for _, t := range trees {
		dest, src, ok := strings.Cut(t, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "cgimage: -tree %q: want DEST=DIR\n", t)
			os.Exit(2)
		}
		if err := img.HostTree(dest, src); err != nil {
			fmt.Fprintln(os.Stderr, "cgimage:", err)
			os.Exit(1)
		}
	}
	for _, l := range links {
		dest, target, ok := strings.Cut(l, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "cgimage: -link %q: want DEST=TARGET\n", l)
			os.Exit(2)
		}
		img.Symlink(dest, target)
	}
	if err := build(img, *out, *probe, *busybox, bins, files); err != nil {
		fmt.Fprintln(os.Stderr, "cgimage:", err)
		os.Exit(1)
	}
}

func build(img *ociarchive.Image, out, probe, busybox string, bins, files []string) error {
	img.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:agent:/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	img.File("etc/group", 0o644, []byte("root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n"))
	img.Dir("workspace", 0o755).Dir("home/node", 0o755).Dir("tmp", 0o1777).Dir("run", 0o755)
	img.Dir("proc", 0o555).Dir("sys", 0o555).Dir("dev", 0o755)
	if busybox != "" {
		img.HostFile("bin/busybox", busybox, 0o755)
		list, err := exec.Command(busybox, "--list-full").Output()
		if err != nil {
			return fmt.Errorf("list busybox applets: %w", err)
		}
		for _, applet := range strings.Fields(string(list)) {
			if applet != "bin/busybox" {
				img.Symlink(applet, "/bin/busybox")
			}
		}
	}
	if probe != "" {
		img.HostFile("usr/local/bin/cgprobe", probe, 0o755)
	}
	for _, b := range bins {
		// SRC[=DEST]: installed at DEST (default: the same path).
		src, dest, ok := strings.Cut(b, "=")
		if !ok {
			dest = src
		}
		img.HostFile(dest, src, 0o755)
		libs, err := sharedLibs(src)
		if err != nil {
			return err
		}
		for _, l := range libs {
			real, err := filepath.EvalSymlinks(l)
			if err != nil {
				return fmt.Errorf("library %s: %w", l, err)
			}
			img.HostFile(l, real, 0o755)
		}
	}
	for _, f := range files {
		dest, src, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("-file %q: want DEST=SRC[:MODE]", f)
		}
		mode := int64(0o644)
		if s, m, ok := strings.Cut(src, ":"); ok {
			if _, err := fmt.Sscanf(m, "%o", &mode); err != nil {
				return fmt.Errorf("-file %q: mode %q is not octal", f, m)
			}
			src = s
		}
		img.HostFile(dest, src, mode)
	}
	return img.WriteFile(out)
}

// sharedLibs lists the absolute paths ldd reports for a binary.
func sharedLibs(bin string) ([]string, error) {
	outb, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, line := range bytes.Split(outb, []byte("\n")) {
		for _, f := range strings.Fields(string(line)) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}
