//! The one place SDK failures become [`CloudError`]s: the AWS error code decides the kind, and
//! transport failures say which endpoint could not be reached.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};

use crate::core::cloud::{CloudError, CloudErrorKind};

/// Where one AWS service's requests go, so a failure to reach it can say so.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The service as people know it, e.g. `Auto Scaling`.
    service: &'static str,
    /// An endpoint override (`AWS_ENDPOINT_URL`), when one is set.
    url: Option<String>,
    region: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(service: &'static str, url: Option<&str>, region: Option<&str>) -> Endpoint {
        Endpoint {
            service,
            url: url.map(str::to_owned),
            region: region.map(str::to_owned),
        }
    }

    /// e.g. `Auto Scaling in eu-west-1` or `Auto Scaling at http://127.0.0.1:5000`.
    fn describe(&self) -> String {
        match (&self.url, &self.region) {
            (Some(url), _) => format!("{} at {url}", self.service),
            (None, Some(region)) => format!("{} in {region}", self.service),
            (None, None) => self.service.to_owned(),
        }
    }

    /// The mapping for `?` on one operation's result: `.map_err(self.endpoint.on(OP))`.
    pub(crate) fn on<E>(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> CloudError + '_
    where
        E: ProvideErrorMetadata + Error + 'static,
    {
        move |err| self.error(operation, err)
    }

    /// Maps a failed SDK call of `operation` (e.g. `ModifyListener`) to a [`CloudError`].
    pub(crate) fn error<E>(&self, operation: &str, err: SdkError<E, HttpResponse>) -> CloudError
    where
        E: ProvideErrorMetadata + Error + 'static,
    {
        let (kind, message) = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let e = service.err();
                return service_error(operation, e.code(), e.message(), Some(status));
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                (
                    kind_for_status(status).unwrap_or(CloudErrorKind::Other),
                    format!(
                        "unreadable answer (HTTP {status}) from {}: {}",
                        self.describe(),
                        causes(&err)
                    ),
                )
            }
            _ => {
                if let Some(problem) = configuration_problem(&err) {
                    problem
                } else {
                    self.transport_problem(&err)
                }
            }
        };
        CloudError::new(kind, operation, message)
    }

    /// Failures that got no answer from AWS: the network, timeouts, a request that could not
    /// be built.
    fn transport_problem<E, R>(&self, err: &SdkError<E, R>) -> (CloudErrorKind, String)
    where
        E: Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let endpoint = self.describe();
        let detail = causes(err);
        match err {
            SdkError::TimeoutError(_) => (
                CloudErrorKind::Unavailable,
                format!("timed out waiting for {endpoint}: {detail}"),
            ),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => (
                CloudErrorKind::Unavailable,
                format!("timed out waiting for {endpoint}: {detail}"),
            ),
            SdkError::DispatchFailure(failure) if failure.is_io() => (
                CloudErrorKind::Unreachable,
                format!("could not reach {endpoint}: {detail}"),
            ),
            SdkError::DispatchFailure(failure) => {
                // Connectors set a retry class only on failures worth retrying (transient,
                // throttling, server); anything unclassified is a local problem.
                let kind = if failure.as_other().is_some() {
                    CloudErrorKind::Unavailable
                } else {
                    CloudErrorKind::Other
                };
                (
                    kind,
                    format!("could not send the request to {endpoint}: {detail}"),
                )
            }
            _ => (
                CloudErrorKind::Other,
                format!("could not build the request for {endpoint}: {detail}"),
            ),
        }
    }
}

/// Credentials or region missing or unusable: the SDK reports these before sending anything.
fn configuration_problem(err: &(dyn Error + 'static)) -> Option<(CloudErrorKind, String)> {
    if let Some(credentials) = find_in_chain::<CredentialsError>(err) {
        return Some((
            CloudErrorKind::Credentials,
            format!(
                // What to do about it is said once, by the caller that maps kinds to advice.
                "no usable AWS credentials ({})",
                causes_from(credentials)
            ),
        ));
    }
    let detail = causes(err);
    // The SDK reports these two only as text: no credentials provider at all, and no region.
    if detail.contains("no identity resolver") {
        return Some((
            CloudErrorKind::Credentials,
            "no AWS credentials are configured; set AWS_PROFILE or export AWS_ACCESS_KEY_ID \
             and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ));
    }
    if detail.contains("Missing Region") {
        return Some((
            CloudErrorKind::Other,
            "no AWS region is configured; set AWS_REGION, a region in the profile, or --region"
                .to_owned(),
        ));
    }
    None
}

/// An answer that lacks a field AWS documents as always present.
pub(crate) fn missing(operation: &str, what: &str, field: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::Other,
        operation,
        format!("AWS returned {what} without {field}"),
    )
}

/// A service's error answer, by its code.
pub(crate) fn service_error(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> CloudError {
    let message = message.map(one_line).filter(|m| !m.is_empty());
    let kind = code
        .and_then(|c| kind_for_code(c, message.as_deref().unwrap_or("")))
        .or_else(|| status.and_then(kind_for_status))
        .unwrap_or(CloudErrorKind::Other);
    let text = match (message, status) {
        (Some(m), _) => m,
        (None, Some(status)) => format!("HTTP {status} with no message"),
        (None, None) => "no message".to_owned(),
    };
    let error = CloudError::new(kind, operation, text);
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}

/// The kind an AWS error code means; `None` for codes this table does not know.
fn kind_for_code(code: &str, message: &str) -> Option<CloudErrorKind> {
    use CloudErrorKind::*;
    Some(match code {
        "ListenerNotFound"
        | "RuleNotFound"
        | "TargetGroupNotFound"
        | "LoadBalancerNotFound"
        | "InvalidAMIID.NotFound"
        | "InvalidAMIID.Unavailable"
        | "InvalidLaunchTemplateId.NotFound"
        | "InvalidLaunchTemplateId.VersionNotFound"
        | "InvalidLaunchTemplateName.NotFoundException"
        // CloudWatch (SetAlarmState and others on a missing alarm, dashboard, …).
        | "ResourceNotFound"
        | "ResourceNotFoundException" => NotFound,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "OptInRequired" => {
            AccessDenied
        }
        "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "AuthFailure"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => Credentials,
        "AlreadyExists"
        | "AlreadyExistsFault"
        | "ResourceInUse"
        | "ResourceInUseFault"
        | "ScalingActivityInProgress"
        | "ScalingActivityInProgressFault"
        | "DuplicateTargetGroupName"
        | "PriorityInUse"
        | "InvalidLaunchTemplateName.AlreadyExistsException" => Conflict,
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "InternalFailure"
        | "InternalError"
        | "InternalServerError"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "PriorRequestNotComplete"
        | "EC2ThrottledException"
        // CloudWatch's InternalServiceFault: its code on the wire is InternalServiceError.
        | "InternalServiceError"
        | "InternalServiceFault" => Unavailable,
        // Auto Scaling reports a missing group as a validation error, e.g.
        // "AutoScalingGroup name not found - AutoScalingGroup 'x' not found".
        "ValidationError" if message.to_ascii_lowercase().contains("not found") => NotFound,
        "ValidationError"
        | "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "InvalidParameterException"
        | "InvalidConfigurationRequest"
        | "InvalidInput"
        | "InvalidAction"
        | "MissingParameter"
        | "OperationNotPermitted"
        | "InvalidTarget"
        | "IncompatibleProtocols"
        | "InvalidNextToken"
        | "InvalidAMIID.Malformed"
        | "InvalidLaunchTemplateId.Malformed"
        | "InvalidLaunchTemplateName.MalformedException"
        | "IdempotentParameterMismatch"
        // CloudWatch: a malformed value (InvalidFormatFault).
        | "InvalidFormat" => InvalidRequest,
        // CloudWatch's quotas ("the quota for alarms has already been reached"): retrying
        // does not help, and the request itself was fine.
        "LimitExceeded" | "LimitExceededException" => Other,
        _ => return None,
    })
}

fn kind_for_status(status: u16) -> Option<CloudErrorKind> {
    match status {
        401 => Some(CloudErrorKind::Credentials),
        403 => Some(CloudErrorKind::AccessDenied),
        429 | 500..=599 => Some(CloudErrorKind::Unavailable),
        _ => None,
    }
}

fn find_in_chain<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The causes below an SDK error's own one-word summary ("dispatch failure"), on one line.
fn causes(err: &(dyn Error + 'static)) -> String {
    match err.source() {
        Some(source) => causes_from(source),
        None => one_line(&err.to_string()),
    }
}

/// `err` and its sources joined with ": ", leaving out the SDK's generic labels and any cause
/// an outer message already quotes.
fn causes_from(err: &(dyn Error + 'static)) -> String {
    const LABELS: &[&str] = &[
        "io error",
        "other",
        "timeout",
        "user error",
        "client error (Connect)",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        let quoted = parts.iter().any(|p| p.contains(&text));
        if !text.is_empty() && !LABELS.contains(&text.as_str()) && !quoted {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        one_line(&err.to_string())
    } else {
        parts.join(": ")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use aws_sdk_autoscaling::error::ConnectorError;
    use aws_sdk_autoscaling::operation::describe_policies::DescribePoliciesError;

    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        use CloudErrorKind::*;
        let cases: &[(&str, &str, Option<u16>, CloudErrorKind)] = &[
            (
                "ListenerNotFound",
                "One or more listeners not found",
                Some(400),
                NotFound,
            ),
            ("RuleNotFound", "", Some(400), NotFound),
            ("TargetGroupNotFound", "", Some(400), NotFound),
            ("LoadBalancerNotFound", "", Some(400), NotFound),
            ("InvalidAMIID.NotFound", "", Some(400), NotFound),
            ("InvalidAMIID.Malformed", "", Some(400), InvalidRequest),
            ("InvalidLaunchTemplateId.NotFound", "", Some(400), NotFound),
            (
                "InvalidLaunchTemplateId.VersionNotFound",
                "",
                Some(400),
                NotFound,
            ),
            (
                "ValidationError",
                "AutoScalingGroup name not found - AutoScalingGroup 'x' not found",
                Some(400),
                NotFound,
            ),
            ("ValidationError", "Group x not found", Some(400), NotFound),
            (
                "ValidationError",
                "Max bound, 1, must be >= min",
                Some(400),
                InvalidRequest,
            ),
            ("AccessDenied", "", Some(403), AccessDenied),
            ("AccessDeniedException", "", Some(400), AccessDenied),
            ("UnauthorizedOperation", "", Some(403), AccessDenied),
            ("ExpiredToken", "", Some(403), Credentials),
            ("ExpiredTokenException", "", Some(400), Credentials),
            ("InvalidClientTokenId", "", Some(403), Credentials),
            ("SignatureDoesNotMatch", "", Some(403), Credentials),
            ("UnrecognizedClientException", "", Some(400), Credentials),
            ("AuthFailure", "", Some(401), Credentials),
            ("AlreadyExists", "", Some(400), Conflict),
            ("AlreadyExistsFault", "", Some(400), Conflict),
            ("ResourceInUse", "", Some(400), Conflict),
            ("ScalingActivityInProgress", "", Some(400), Conflict),
            ("DuplicateTargetGroupName", "", Some(400), Conflict),
            ("Throttling", "Rate exceeded", Some(400), Unavailable),
            ("RequestLimitExceeded", "", Some(503), Unavailable),
            ("InvalidParameterValue", "", Some(400), InvalidRequest),
            ("InvalidParameterCombination", "", Some(400), InvalidRequest),
            ("InvalidConfigurationRequest", "", Some(400), InvalidRequest),
            (
                "PriorityInUse",
                "Priority '10' is currently in use",
                Some(400),
                Conflict,
            ),
            // CloudWatch (awsQuery codes, as x-amzn-query-error carries them).
            ("ResourceNotFound", "", Some(404), NotFound),
            ("ResourceNotFoundException", "", Some(404), NotFound),
            (
                "InvalidParameterValue",
                "The parameter Period",
                Some(400),
                InvalidRequest,
            ),
            ("MissingParameter", "", Some(400), InvalidRequest),
            ("InvalidFormat", "", Some(400), InvalidRequest),
            ("LimitExceeded", "The quota for alarms", Some(400), Other),
            ("LimitExceededException", "", Some(400), Other),
            ("InternalServiceError", "", Some(500), Unavailable),
            ("InternalServiceFault", "", Some(500), Unavailable),
            (
                "InvalidParameterCombination",
                "The parameters MetricName and Expression are mutually exclusive",
                Some(400),
                InvalidRequest,
            ),
            ("SomethingNew", "", Some(503), Unavailable),
            ("SomethingNew", "", Some(500), Unavailable),
            ("SomethingNew", "", Some(429), Unavailable),
            ("SomethingNew", "", Some(403), AccessDenied),
            ("SomethingNew", "", Some(400), Other),
            ("SomethingNew", "", None, Other),
        ];
        for (code, message, status, kind) in cases {
            let err = service_error("Op", Some(code), Some(message), *status);
            assert_eq!(err.kind, *kind, "{code} {message:?} {status:?}");
            assert_eq!(err.code.as_deref(), Some(*code));
            assert_eq!(err.operation, "Op");
        }
    }

    #[test]
    fn service_message_is_one_line() {
        let err = service_error(
            "ModifyListener",
            Some("ListenerNotFound"),
            Some("  Listener\n  'arn' not found "),
            Some(400),
        );
        assert_eq!(err.message, "Listener 'arn' not found");
        assert_eq!(
            err.to_string(),
            "ModifyListener failed (ListenerNotFound): Listener 'arn' not found"
        );
        let bare = service_error("DescribeRules", None, None, Some(503));
        assert_eq!(bare.kind, CloudErrorKind::Unavailable);
        assert_eq!(bare.message, "HTTP 503 with no message");
    }

    fn endpoint() -> Endpoint {
        Endpoint::new(
            "Auto Scaling",
            Some("http://127.0.0.1:9"),
            Some("us-east-1"),
        )
    }

    type Err = SdkError<DescribePoliciesError, HttpResponse>;

    #[test]
    fn unreachable_endpoint_is_unavailable_and_named() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err: Err = SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let mapped = endpoint().error("DescribePolicies", err);
        assert_eq!(mapped.kind, CloudErrorKind::Unreachable);
        assert_eq!(
            mapped.message,
            "could not reach Auto Scaling at http://127.0.0.1:9: refused"
        );
        assert_eq!(mapped.code, None);
    }

    #[test]
    fn timeouts_are_unavailable() {
        let err: Err = SdkError::timeout_error("operation timeout (all attempts) after 3s");
        let mapped = endpoint().error("DescribePolicies", err);
        assert_eq!(mapped.kind, CloudErrorKind::Unavailable);
        assert!(
            mapped
                .message
                .starts_with("timed out waiting for Auto Scaling")
        );
        let no_url = Endpoint::new("Auto Scaling", None, Some("eu-west-1"));
        let err: Err = SdkError::dispatch_failure(ConnectorError::timeout("slow".into()));
        let mapped = no_url.error("DescribePolicies", err);
        assert_eq!(mapped.kind, CloudErrorKind::Unavailable);
        assert_eq!(
            mapped.message,
            "timed out waiting for Auto Scaling in eu-west-1: slow"
        );
    }

    #[test]
    fn missing_credentials_are_credentials() {
        let missing = CredentialsError::not_loaded("no providers in chain provided credentials");
        let err: Err = SdkError::dispatch_failure(ConnectorError::other(Box::new(missing), None));
        let mapped = endpoint().error("DescribePolicies", err);
        assert_eq!(mapped.kind, CloudErrorKind::Credentials);
        assert!(
            mapped
                .message
                .contains("no providers in chain provided credentials"),
            "{}",
            mapped.message
        );
        let err: Err = SdkError::construction_failure(CredentialsError::provider_error(
            "The SSO session has expired",
        ));
        assert_eq!(
            endpoint().error("DescribePolicies", err).kind,
            CloudErrorKind::Credentials
        );
    }

    #[test]
    fn missing_identity_resolver_is_credentials() {
        let err: Err = SdkError::dispatch_failure(ConnectorError::other(
            "failed to select an auth scheme to sign the request with. \"aws.auth#sigv4\" \
             wasn't a valid option because there was no identity resolver for it."
                .into(),
            None,
        ));
        assert_eq!(
            endpoint().error("DescribePolicies", err).kind,
            CloudErrorKind::Credentials
        );
    }

    #[test]
    fn construction_failures_are_other() {
        let err: Err = SdkError::construction_failure("missing field `AutoScalingGroupName`");
        let mapped = endpoint().error("DescribePolicies", err);
        assert_eq!(mapped.kind, CloudErrorKind::Other);
        assert!(mapped.message.contains("AutoScalingGroupName"));
    }
}
