// Package ottlprofile is a build shim for the OTTL profile context: see ../README.md.
// Every path is rejected, so a profile condition can never be configured by mistake.
package ottlprofile

import (
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pprofile"

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

// TransformContextOption configures a TransformContext.
type TransformContextOption func(*TransformContext)

// WithCache accepts the transform processor's cache; the shim context keeps nothing.
func WithCache(_ *pcommon.Map) TransformContextOption {
	return func(*TransformContext) {}
}

// NewTransformContext returns an empty context; no statement can read from it (see NewParser).
func NewTransformContext(
	_ pprofile.ResourceProfiles, _ pprofile.ScopeProfiles, _ pprofile.Profile,
	_ pprofile.ProfilesDictionary, options ...TransformContextOption,
) *TransformContext {
	tCtx := &TransformContext{}
	for _, opt := range options {
		opt(tCtx)
	}
	return tCtx
}

// Close releases nothing: the shim context holds no pooled resources.
func (*TransformContext) Close() {}

// StatementSequenceOption configures a statement sequence.
type StatementSequenceOption func(*ottl.StatementSequence[*TransformContext])

// WithStatementSequenceErrorMode sets the error mode of a statement sequence.
func WithStatementSequenceErrorMode(errorMode ottl.ErrorMode) StatementSequenceOption {
	return func(s *ottl.StatementSequence[*TransformContext]) {
		ottl.WithStatementSequenceErrorMode[*TransformContext](errorMode)(s)
	}
}

// NewStatementSequence builds a statement sequence over the (empty) profile context.
func NewStatementSequence(
	statements []*ottl.Statement[*TransformContext],
	telemetrySettings component.TelemetrySettings,
	options ...StatementSequenceOption,
) ottl.StatementSequence[*TransformContext] {
	s := ottl.NewStatementSequence(statements, telemetrySettings)
	for _, op := range options {
		op(&s)
	}
	return s
}
