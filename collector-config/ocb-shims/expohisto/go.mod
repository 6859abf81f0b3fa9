module github.com/open-telemetry/opentelemetry-collector-contrib/pkg/expohisto

go 1.25
