// Package ottlprofile is a build shim for the OTTL profile context: see ../README.md.
// Every path is rejected, so a profile condition can never be configured by mistake.
package ottlprofile

import (
	"errors"

	"go.opentelemetry.io/collector/component"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
)

// ContextName is the OTTL context name the real module uses for profiles.
const ContextName = "profile"

// TransformContext stands in for the real profile transform context; it carries nothing.
type TransformContext struct{}

var errNoProfiles = errors.New("profile context is not available in this collector build")

// NewParser returns a parser whose path parser rejects every path.
func NewParser(
	functions map[string]ottl.Factory[*TransformContext],
	telemetrySettings component.TelemetrySettings,
	options ...ottl.Option[*TransformContext],
) (ottl.Parser[*TransformContext], error) {
	reject := func(ottl.Path[*TransformContext]) (ottl.GetSetter[*TransformContext], error) {
		return nil, errNoProfiles
	}
	return ottl.NewParser(functions, reject, telemetrySettings, options...)
}

// EnablePathContextNames mirrors the real option: paths must carry the profile context name.
func EnablePathContextNames() ottl.Option[*TransformContext] {
	return ottl.WithPathContextNames[*TransformContext]([]string{ContextName})
}

// ConditionSequenceOption configures a condition sequence.
type ConditionSequenceOption func(*ottl.ConditionSequence[*TransformContext])

// WithConditionSequenceErrorMode sets the error mode of a condition sequence.
func WithConditionSequenceErrorMode(errorMode ottl.ErrorMode) ConditionSequenceOption {
	return func(c *ottl.ConditionSequence[*TransformContext]) {
		ottl.WithConditionSequenceErrorMode[*TransformContext](errorMode)(c)
	}
}

// NewConditionSequence builds a condition sequence over the (empty) profile context.
func NewConditionSequence(
	conditions []*ottl.Condition[*TransformContext],
	telemetrySettings component.TelemetrySettings,
	options ...ConditionSequenceOption,
) ottl.ConditionSequence[*TransformContext] {
	c := ottl.NewConditionSequence(conditions, telemetrySettings)
	for _, op := range options {
		op(&c)
	}
	return c
}
