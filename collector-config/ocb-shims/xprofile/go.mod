module github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/xprofile

go 1.25

require (
	github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl v1.4.0
	go.opentelemetry.io/collector/component v1.71.0
	go.opentelemetry.io/collector/pdata v1.71.0
	go.opentelemetry.io/collector/pdata/pprofile v0.165.0
)
