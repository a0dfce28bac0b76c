//! What the environment asks of telemetry: the log format and whether (and how) to export traces.
//!
//! The variables are OpenTelemetry's own (`OTEL_*`, see the SDK environment variable
//! specification) plus `LOG_FORMAT`. Read here: whether to export, the protocol, the queue size;
//! checked here: the endpoints (the exporter would quietly fall back to localhost on one it
//! cannot parse). The SDK and the exporter read the rest themselves (the endpoints' values,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`/`_ARG`, the other `OTEL_BSP_*`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, headers).
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is the collector's base URL (`/v1/traces` is appended for
//! HTTP); `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is.

use super::TelemetryError;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`LOG_FORMAT=text`, the default).
    Text,
    /// One JSON object per line with the trace and span ids (`LOG_FORMAT=json`).
    Json,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`, port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, port 4318; the specification's
    /// default).
    HttpProtobuf,
}

/// Telemetry settings, read from the environment by [`Settings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How log lines look.
    pub log_format: LogFormat,
    /// Where traces go; `None`: nowhere (the default).
    pub export: Option<Protocol>,
    /// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048); more are
    /// dropped and counted.
    pub max_queue_size: usize,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (for tests).
    ///
    /// Export is on when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp` asks for the default
    /// endpoint, and off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let log_format = match set("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("LOG_FORMAT", other, "text or json")),
        };
        // Booleans are case-insensitive in the specification.
        let disabled = match set("OTEL_SDK_DISABLED").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(value) if value == "false" => false,
            Some(value) if value == "true" => true,
            Some(other) => return Err(invalid("OTEL_SDK_DISABLED", &other, "true or false")),
        };
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            if let Some(value) = set(name) {
                let parsed = url::Url::parse(value.trim()).ok();
                if !parsed.is_some_and(|url| {
                    matches!(url.scheme(), "http" | "https") && url.host().is_some()
                }) {
                    return Err(invalid(name, &value, "an http:// or https:// URL"));
                }
            }
        }
        let wanted = match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None => {
                set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
                    || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            }
            Some("otlp") => true,
            Some("none") => false,
            Some(other) => return Err(invalid("OTEL_TRACES_EXPORTER", other, "otlp or none")),
        };
        let export = if wanted && !disabled {
            let (name, value) = [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ]
            .into_iter()
            .find_map(|name| set(name).map(|value| (name, value)))
            .unwrap_or(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()));
            Some(match value.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                other => return Err(invalid(name, other, "grpc or http/protobuf")),
            })
        } else {
            None
        };
        let max_queue_size = match set("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => 2048,
            Some(value) => value
                .trim()
                .parse()
                .ok()
                .filter(|size| *size > 0)
                .ok_or_else(|| invalid("OTEL_BSP_MAX_QUEUE_SIZE", &value, "a positive integer"))?,
        };
        Ok(Self {
            log_format,
            export,
            max_queue_size,
        })
    }
}

fn invalid(variable: &'static str, value: &str, expected: &str) -> TelemetryError {
    TelemetryError::Setting {
        variable,
        problem: format!("{value:?} is not supported; use {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, TelemetryError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Settings::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn export_is_off_until_an_endpoint_or_exporter_is_named() {
        let off = settings(&[]).unwrap();
        assert_eq!(off.export, None);
        assert_eq!(off.log_format, LogFormat::Text);
        assert_eq!(off.max_queue_size, 2048);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            settings(&[endpoint]).unwrap().export,
            Some(Protocol::HttpProtobuf)
        );
        assert_eq!(
            settings(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )])
            .unwrap()
            .export,
            Some(Protocol::HttpProtobuf)
        );
        assert_eq!(
            settings(&[("OTEL_TRACES_EXPORTER", "otlp")])
                .unwrap()
                .export,
            Some(Protocol::HttpProtobuf)
        );
        for off in [
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_SDK_DISABLED", "true"),
        ] {
            assert_eq!(settings(&[endpoint, off]).unwrap().export, None, "{off:?}");
        }
    }

    #[test]
    fn the_traces_protocol_wins_over_the_general_one() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        let grpc = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(grpc.export, Some(Protocol::Grpc));
        let traces = settings(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(traces.export, Some(Protocol::HttpProtobuf));
    }

    #[test]
    fn unsupported_values_name_the_variable_and_the_choices() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        for (vars, variable, choices) in [
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT", "text or json"),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "grpc or http/protobuf",
            ),
            (
                vec![("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
                "otlp or none",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http:// or https:// URL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http//collector")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http:// or https:// URL",
            ),
            (
                vec![("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "positive integer",
            ),
        ] {
            let error = settings(&vars).unwrap_err().to_string();
            assert!(
                error.starts_with(variable) && error.contains(choices),
                "{error}"
            );
        }
        assert_eq!(
            settings(&[("LOG_FORMAT", "json")]).unwrap().log_format,
            LogFormat::Json
        );
    }
}
