//! Structured logs like Flux's zap setup: JSON lines with `level`, `ts` (ISO 8601, milliseconds),
//! `msg`, then the fields of the enclosing spans (e.g. `controller`, `name`, `namespace`,
//! `reconcileID`) and of the event. `--log-encoding=console` gives human-readable lines.

use std::fmt;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::flags::{LogEncoding, LogLevel};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` held an invalid directive.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was already installed.
    #[error("logging already initialised: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// The filter for a Flux log level. Dependencies' chatter stays at `warn` unless `RUST_LOG`
/// (which overrides everything) asks for more.
pub fn filter(level: LogLevel) -> Result<EnvFilter, LoggingError> {
    if let Ok(spec) = std::env::var("RUST_LOG")
        && !spec.is_empty()
    {
        return Ok(EnvFilter::try_new(spec)?);
    }
    let base = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Error => "error",
    };
    let quiet = [
        "hyper",
        "hyper_util",
        "h2",
        "rustls",
        "tower",
        "reqwest",
        "kube_runtime",
    ];
    let mut spec = base.to_string();
    if matches!(level, LogLevel::Trace | LogLevel::Debug) {
        for q in quiet {
            spec.push_str(&format!(",{q}=warn"));
        }
    }
    // kube's client logs every failed request at error level; the caller reports the same
    // failure with context, so this would only double each line.
    spec.push_str(",kube_client=off");
    Ok(EnvFilter::try_new(spec)?)
}

/// Installs the global subscriber for `--log-level` and `--log-encoding`.
pub fn init(level: LogLevel, encoding: LogEncoding) -> Result<(), LoggingError> {
    let filter = filter(level)?;
    match encoding {
        LogEncoding::Json => tracing_subscriber::registry()
            .with(filter)
            .with(SpanFields)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(FluxJson)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogEncoding::Console => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(())
}

/// Span fields as JSON, kept in the span's extensions for [`FluxJson`].
#[derive(Debug, Default, Clone)]
struct JsonFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(key(field), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(key(field), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(key(field), Value::String(value.to_string()));
    }
}

fn key(field: &Field) -> String {
    match field.name() {
        "message" => "msg".to_string(),
        other => other.to_string(),
    }
}

/// Layer recording span fields so events can be flattened with them.
struct SpanFields;

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = JsonFields::default();
        attrs.record(&mut JsonVisitor(&mut fields.0));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<JsonFields>() {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }
}

/// Flux's level names.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Zap's ISO 8601 encoder: `2006-01-02T15:04:05.000Z`.
pub fn iso8601_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The JSON event formatter.
struct FluxJson;

impl<S, N> FormatEvent<S, N> for FluxJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut event_fields = Map::new();
        event.record(&mut JsonVisitor(&mut event_fields));
        let msg = event_fields
            .remove("msg")
            .unwrap_or(Value::String(String::new()));
        // Zap's key order: level, ts, msg, then context (spans, outermost first), then the event's
        // own fields; a later value for the same key replaces the earlier one in place.
        let mut fields: Vec<(String, Value)> = vec![
            ("level".into(), level_name(event.metadata().level()).into()),
            ("ts".into(), iso8601_now().into()),
            ("msg".into(), msg),
        ];
        let mut put = |k: &String, v: &Value| match fields.iter_mut().find(|(x, _)| x == k) {
            Some(slot) => slot.1 = v.clone(),
            None => fields.push((k.clone(), v.clone())),
        };
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<JsonFields>() {
                    for (k, v) in &span_fields.0 {
                        put(k, v);
                    }
                }
            }
        }
        for (k, v) in &event_fields {
            put(k, v);
        }
        let mut line = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::to_string(k).map_err(|_| fmt::Error)?);
            line.push(':');
            line.push_str(&serde_json::to_string(v).map_err(|_| fmt::Error)?);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Writes one JSON log line to stderr without a subscriber, for errors before logging starts.
pub fn early_error(msg: &str, error: &dyn fmt::Display) {
    let line = serde_json::json!({
        "level": "error",
        "ts": iso8601_now(),
        "msg": msg,
        "error": error.to_string(),
    });
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_have_flux_keys_and_span_fields() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(FluxJson)
                .with_writer(move || w.clone()),
        );
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!(
                "reconcile",
                controller = "imagerepository",
                name = "podinfo",
                namespace = "flux-system"
            );
            let _g = span.enter();
            tracing::error!(error = "boom", "Reconciler error");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(out.starts_with("{\"level\":\"error\",\"ts\":\""), "{out}");
        assert!(
            out.contains("\"msg\":\"Reconciler error\",\"controller\""),
            "{out}"
        );
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "Reconciler error");
        assert_eq!(v["controller"], "imagerepository");
        assert_eq!(v["name"], "podinfo");
        assert_eq!(v["namespace"], "flux-system");
        assert_eq!(v["error"], "boom");
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2006-01-02T15:04:05.000Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn level_filters() {
        assert!(filter(LogLevel::Info).is_ok());
        assert!(
            filter(LogLevel::Trace)
                .unwrap()
                .to_string()
                .contains("hyper=warn")
        );
    }
}
