//! One log line per AWS call attempt (`-vv`): an SDK interceptor, registered on every client,
//! opens a span `aws{service, operation, attempt}` when the retry loop starts an attempt and,
//! when the attempt ends, records its latency, HTTP status, AWS request id and error code on it
//! and logs one debug event inside it (target `greenlight::aws`).
//!
//! Nothing of the request is logged (no body, no headers, so no credentials or signatures); from
//! the response only the status, the request id and the error code. When these lines are off
//! (the default, and `-v`) an attempt costs one check of the log level per hook.

use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// The interceptor every AWS client carries (see `AwsCloud::from_conf`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallLog;

/// The attempt in flight, kept in the call's config bag between the two hooks.
#[derive(Debug)]
struct Attempt {
    span: tracing::Span,
    started: Instant,
    /// Logged by `read_after_attempt`. An attempt whose call was dropped half-way (the caller
    /// stopped waiting for it) never gets there: it is logged when the bag is dropped.
    logged: AtomicBool,
}

impl Attempt {
    fn start(service: &str, operation: &str, attempt: u32) -> Attempt {
        let span = tracing::debug_span!(
            target: "greenlight::aws",
            "aws",
            service,
            operation,
            attempt,
            latency_ms = tracing::field::Empty,
            status = tracing::field::Empty,
            request_id = tracing::field::Empty,
            error = tracing::field::Empty,
            cause = tracing::field::Empty,
        );
        Attempt {
            span,
            started: Instant::now(),
            logged: AtomicBool::new(false),
        }
    }
}

impl Storable for Attempt {
    type Storer = StoreReplace<Self>;
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.logged.load(Ordering::Relaxed) && !self.span.is_disabled() {
            let latency_ms = elapsed_ms(self.started);
            self.span.record("latency_ms", latency_ms);
            self.span.record("error", "abandoned");
            self.span.in_scope(|| {
                tracing::debug!(
                    target: "greenlight::aws",
                    "AWS call abandoned: the caller stopped waiting for it"
                );
            });
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "greenlight::CallLog"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Logs off (the default): nothing to keep for this attempt.
        if !tracing::enabled!(target: "greenlight::aws", tracing::Level::DEBUG) {
            return Ok(());
        }
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("?", "?"), |m| (m.service(), m.name()));
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let attempt = Attempt::start(service, operation, attempt);
        cfg.interceptor_state().store_put(attempt);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !tracing::enabled!(target: "greenlight::aws", tracing::Level::DEBUG) {
            return Ok(());
        }
        let Some(attempt) = cfg.load::<Attempt>() else {
            return Ok(());
        };
        attempt.logged.store(true, Ordering::Relaxed);
        let (span, started) = (&attempt.span, attempt.started);
        if span.is_disabled() {
            return Ok(());
        }
        span.record("latency_ms", elapsed_ms(started));
        let response = context.response();
        if let Some(response) = response {
            span.record("status", response.status().as_u16());
            if let Some(id) = request_id(response) {
                span.record("request_id", id);
            }
        }
        let failed = match context.output_or_error() {
            Some(Ok(_)) => false,
            Some(Err(err)) => {
                let code = response.and_then(error_code);
                match code {
                    Some(code) => span.record("error", code),
                    None => span.record("error", failure_kind(err)),
                };
                if !err.is_operation_error() {
                    span.record("cause", causes(err).as_str());
                }
                true
            }
            // No result at all: the attempt ended before a response (an interceptor or the
            // request's construction failed); the status, if any, tells.
            None => response.is_none_or(|r| !r.status().is_success()),
        };
        span.in_scope(|| {
            if failed {
                tracing::debug!(target: "greenlight::aws", "AWS call failed");
            } else {
                tracing::debug!(target: "greenlight::aws", "AWS call");
            }
        });
        Ok(())
    }
}

/// Why an attempt failed when the answer carries no AWS error code.
fn failure_kind<E>(err: &OrchestratorError<E>) -> &'static str {
    if err.is_timeout_error() {
        "timeout"
    } else if let Some(connector) = err.as_connector_error() {
        if connector.is_timeout() {
            "connect timeout"
        } else if connector.is_io() {
            "connection failed"
        } else {
            "dispatch failure"
        }
    } else if err.is_response_error() {
        "unreadable response"
    } else if err.is_operation_error() {
        "service error"
    } else if err.is_interceptor_error() {
        "interceptor error"
    } else {
        "request not sent"
    }
}

/// The error's causes, one after the other (`hyper … : tcp connect error: Connection refused`).
fn causes<E>(err: &OrchestratorError<E>) -> String
where
    E: std::fmt::Debug,
    OrchestratorError<E>: std::error::Error,
{
    let mut text = String::new();
    let mut source = err.source();
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        let _ = write!(text, "{cause}");
        source = cause.source();
    }
    text
}

/// The AWS request id of an answer: the `x-amzn-RequestId` (or S3-style `x-amz-request-id`)
/// header AWS sets on every answer; failing that, EC2's `<requestId>` / `<RequestID>` in the
/// XML (looked for only at the start and end of the body, where AWS puts it).
pub(crate) fn request_id(response: &HttpResponse) -> Option<&str> {
    let headers = response.headers();
    if let Some(id) = headers
        .get("x-amzn-requestid")
        .or_else(|| headers.get("x-amz-request-id"))
        .filter(|id| !id.is_empty())
    {
        return Some(id);
    }
    let body = response.body().bytes()?;
    const WINDOW: usize = 1024;
    let head = &body[..body.len().min(WINDOW)];
    let tail = &body[body.len().saturating_sub(WINDOW)..];
    ["requestId", "RequestId", "RequestID"]
        .iter()
        .find_map(|tag| xml_element(head, tag).or_else(|| xml_element(tail, tag)))
}

/// The AWS error code of a failed answer: from the `x-amzn-query-error` (`Code;Sender`) or
/// `x-amzn-ErrorType` (`Code:…`) header, else the body's `<Code>` (XML protocols) or `__type`
/// (JSON and CBOR protocols, `namespace#Code`).
pub(crate) fn error_code(response: &HttpResponse) -> Option<&str> {
    if response.status().is_success() {
        return None;
    }
    let headers = response.headers();
    if let Some(code) = headers
        .get("x-amzn-query-error")
        .and_then(|v| v.split(';').next())
        .or_else(|| {
            headers
                .get("x-amzn-errortype")
                .and_then(|v| v.split(':').next())
        })
        .filter(|code| !code.is_empty())
    {
        return Some(code);
    }
    let body = response.body().bytes()?;
    xml_element(body, "Code").or_else(|| type_field(body))
}

/// The text of the first `<tag>…</tag>` in `body`, if short and plain.
fn xml_element<'a>(body: &'a [u8], tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = find(body, open.as_bytes())? + open.len();
    let len = find(&body[start..], b"<")?;
    let text = std::str::from_utf8(&body[start..start + len]).ok()?.trim();
    plain(text)
}

/// The value of `__type` in a JSON or CBOR error body, without its namespace.
fn type_field(body: &[u8]) -> Option<&str> {
    let at = find(body, b"__type")? + "__type".len();
    let rest = &body[at..];
    let value = if let Some(json) = rest.strip_prefix(b"\"") {
        // JSON: "__type": "value"
        let open = find(json, b"\"")? + 1;
        let len = find(&json[open..], b"\"")?;
        &json[open..open + len]
    } else {
        // CBOR: a text string (major type 3) with its length in the head.
        let (&head, rest) = rest.split_first()?;
        let (len, rest) = match head {
            0x60..=0x77 => (usize::from(head - 0x60), rest),
            0x78 => {
                let (&len, rest) = rest.split_first()?;
                (usize::from(len), rest)
            }
            _ => return None,
        };
        rest.get(..len)?
    };
    let value = std::str::from_utf8(value).ok()?;
    let code = value.rsplit('#').next().unwrap_or(value);
    let code = code.split(':').next().unwrap_or(code);
    plain(code)
}

/// `text` if it looks like a code or an id (no markup, not huge).
fn plain(text: &str) -> Option<&str> {
    (!text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)))
    .then_some(text)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn response(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut response = HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::from(body.to_vec()),
        );
        for (name, value) in headers {
            response.headers_mut().insert(*name, *value);
        }
        response
    }

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_attempt_dropped_before_its_end_is_logged_as_abandoned_once() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_env_filter("greenlight=debug")
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // Its call was dropped (the caller stopped waiting): no read_after_attempt.
            drop(Attempt::start("EC2", "DeleteLaunchTemplate", 2));
            // Logged already: nothing more when the bag lets it go.
            let done = Attempt::start("EC2", "DescribeImages", 1);
            done.logged.store(true, Ordering::Relaxed);
            drop(done);
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(
            lines[0].contains(r#"operation="DeleteLaunchTemplate" attempt=2"#),
            "{text}"
        );
        assert!(lines[0].contains(r#"error="abandoned""#), "{text}");
        assert!(lines[0].ends_with("AWS call abandoned: the caller stopped waiting for it"));
    }

    #[test]
    fn the_request_id_comes_from_the_header_whatever_its_case_else_from_ec2s_body() {
        let r = response(200, &[("x-amzn-RequestId", "abc-123")], b"");
        assert_eq!(request_id(&r), Some("abc-123"));
        let r = response(200, &[("x-amz-request-id", "s3-1")], b"");
        assert_eq!(request_id(&r), Some("s3-1"));
        let r = response(
            200,
            &[],
            b"<DescribeImagesResponse><requestId>59dbff89-35bd</requestId><imagesSet/></DescribeImagesResponse>",
        );
        assert_eq!(request_id(&r), Some("59dbff89-35bd"));
        let r = response(
            400,
            &[],
            b"<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code></Error></Errors><RequestID>ec2-err-1</RequestID></Response>",
        );
        assert_eq!(request_id(&r), Some("ec2-err-1"));
        assert_eq!(request_id(&response(200, &[], b"{}")), None);
    }

    #[test]
    fn the_error_code_comes_from_the_headers_or_the_body_of_any_protocol() {
        let query = response(
            400,
            &[],
            b"<ErrorResponse><Error><Type>Sender</Type><Code>ListenerNotFound</Code><Message>x</Message></Error></ErrorResponse>",
        );
        assert_eq!(error_code(&query), Some("ListenerNotFound"));
        let header = response(400, &[("x-amzn-query-error", "Throttling;Sender")], b"");
        assert_eq!(error_code(&header), Some("Throttling"));
        let json = response(
            400,
            &[],
            br#"{"__type":"com.amazonaws.cloudwatch#ResourceNotFound","message":"x"}"#,
        );
        assert_eq!(error_code(&json), Some("ResourceNotFound"));
        // CBOR: {"__type": "com.amazon.coral.service#ThrottlingException"}
        let mut cbor = vec![0xa1, 0x66];
        cbor.extend_from_slice(b"__type");
        let value = b"com.amazon.coral.service#ThrottlingException";
        cbor.push(0x78);
        cbor.push(value.len() as u8);
        cbor.extend_from_slice(value);
        assert_eq!(
            error_code(&response(400, &[], &cbor)),
            Some("ThrottlingException")
        );
        assert_eq!(error_code(&response(200, &[], b"<Code>x</Code>")), None);
        assert_eq!(error_code(&response(503, &[], b"<html>busy</html>")), None);
    }
}
