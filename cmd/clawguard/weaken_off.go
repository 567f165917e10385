//go:build !clawguard_weaken

package main

import "github.com/containerd/containerd/v2/pkg/oci"

// weakenOpts is empty in every real build: only the end-to-end suite's
// build (tag clawguard_weaken) can weaken a sandbox on purpose.
func weakenOpts() ([]oci.SpecOpts, error) { return nil, nil }

// weakened is false in every real build.
func weakened(string) bool { return false }
