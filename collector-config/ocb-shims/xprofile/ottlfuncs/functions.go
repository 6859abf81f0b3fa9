// Package ottlfuncs is a build shim for the profile-only OTTL converters: see ../README.md.
package ottlfuncs

import "github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"

// WithProfileConverters returns funcs unchanged: profile converters only matter for profiles,
// which this collector never processes.
func WithProfileConverters[K any](funcs map[string]ottl.Factory[K]) map[string]ottl.Factory[K] {
	return funcs
}
