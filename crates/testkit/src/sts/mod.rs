//! An AWS STS endpoint for tests on `127.0.0.1:<free port>`: AssumeRole, GetCallerIdentity and
//! GetSessionToken in AWS's Query protocol (form-encoded POST, XML answers in the
//! `https://sts.amazonaws.com/doc/2011-06-15/` namespace, `<ErrorResponse>` errors), so that
//! `aws-sdk-sts` and `aws sts` talk to it unchanged.
//!
//! The guarantee: every request is SigV4-checked (service `sts`, against the real time) and
//! authenticated against the [`Iam`] it shares with the S3 test server, session token included;
//! AssumeRole issues credentials only to a principal the role trusts, with the role's external
//! ID, for at most the role's maximum session (one hour when chaining roles), bounded by the
//! role's policy and the request's session `Policy`. Refusals use AWS's codes and words.

mod sigv4;
mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::iam::{AssumeRoleRefusal, AssumeRoleRequest, CredentialRefusal, Iam, Policy, Principal};
use crate::s3_edge::shifted;
use sigv4::{Authorization, SignatureRefusal, SignedRequest};
use wire::{Params, StsError};

/// The largest request body read (a session policy is at most 2048 characters).
const MAX_BODY: usize = 64 * 1024;

/// AWS's limits on AssumeRole and GetSessionToken input.
const MIN_DURATION: u64 = 900;
const MAX_ASSUME_ROLE_DURATION: u64 = 43_200;
const MAX_SESSION_TOKEN_DURATION: u64 = 129_600;
const DEFAULT_SESSION_TOKEN_DURATION: u64 = 43_200;
const MAX_POLICY_LENGTH: usize = 2048;

/// A running STS endpoint. Stops when dropped.
#[derive(Debug)]
pub struct StsServer {
    address: SocketAddr,
    iam: Iam,
    /// Seconds the server's clock is ahead of the real time (negative: behind).
    clock_offset: Arc<AtomicI64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl StsServer {
    /// Starts an endpoint that authenticates against, and issues credentials into, `iam`
    /// (usually `s3_server.iam().clone()`, so the S3 server accepts what it issues).
    pub async fn start(iam: Iam) -> anyhow::Result<StsServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the STS test server")?;
        let address = listener.local_addr()?;
        let served = iam.clone();
        let clock_offset = Arc::new(AtomicI64::new(0));
        let offset = clock_offset.clone();
        let accept_task = tokio::spawn(async move {
            // Dropping the set (when the accept task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(error) => {
                        tracing::warn!(%error, "STS test server: accept failed");
                        continue;
                    }
                };
                let iam = served.clone();
                let offset = offset.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let iam = iam.clone();
                        let now = shifted(SystemTime::now(), offset.load(Ordering::SeqCst));
                        async move { Ok::<_, Infallible>(handle(&iam, request, now).await) }
                    });
                    let _ = ConnectionBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(StsServer {
            address,
            iam,
            clock_offset,
            accept_task,
        })
    }

    /// `http://127.0.0.1:PORT` (the `--endpoint-url` / `endpoint_url` of STS clients).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The identities this endpoint serves.
    pub fn iam(&self) -> &Iam {
        &self.iam
    }

    /// Moves the server's clock by `offset_secs` (negative: behind): a request signed more than
    /// 15 minutes from it is refused as STS refuses it (`SignatureDoesNotMatch`, "Signature
    /// expired: …"), as for a client whose clock is off.
    pub fn set_clock_offset(&self, offset_secs: i64) {
        self.clock_offset.store(offset_secs, Ordering::SeqCst);
    }
}

impl Drop for StsServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn handle(iam: &Iam, request: Request<Incoming>, now: SystemTime) -> Response<Full<Bytes>> {
    let request_id = wire::request_id();
    match answer(iam, request, &request_id, now).await {
        Ok(body) => wire::response(StatusCode::OK, body, &request_id),
        Err(error) => wire::response(error.status, error.to_xml(&request_id), &request_id),
    }
}

async fn answer(
    iam: &Iam,
    request: Request<Incoming>,
    request_id: &str,
    now: SystemTime,
) -> Result<String, StsError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| StsError::validation("the request body is too large"))?
        .to_bytes();
    let query = parts.uri.query().unwrap_or_default();
    let authorization = Authorization::parse(&parts.headers).map_err(signature_error)?;
    let secret = iam
        .secret_of(&authorization.access_key_id)
        .ok_or_else(StsError::invalid_client_token_id)?;
    authorization
        .verify(
            &SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query,
                headers: &parts.headers,
                body: &body,
            },
            &secret,
            "sts",
            now,
        )
        .map_err(signature_error)?;
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|value| value.to_str().ok());
    let caller = iam
        .authenticate(&authorization.access_key_id, token)
        .map_err(credential_error)?;
    let params = Params::parse(query, &body);
    match params.get("Action") {
        Some("AssumeRole") => assume_role(iam, &caller, &params, request_id),
        Some("GetCallerIdentity") => Ok(wire::caller_identity(&caller.identity, request_id)),
        Some("GetSessionToken") => get_session_token(iam, &caller, &params, request_id),
        Some(other) => Err(StsError::invalid_action(other)),
        None => Err(StsError::missing_action()),
    }
}

fn assume_role(
    iam: &Iam,
    caller: &Principal,
    params: &Params,
    request_id: &str,
) -> Result<String, StsError> {
    let role_arn = params.required("RoleArn", "roleArn")?;
    let session_name = params.required("RoleSessionName", "roleSessionName")?;
    wire::check_length(role_arn, "roleArn", 20, 2048)?;
    wire::check_pattern(
        session_name,
        "roleSessionName",
        2,
        64,
        "[\\w+=,.@-]*",
        "+=,.@-",
    )?;
    let external_id = params.get("ExternalId");
    if let Some(external_id) = external_id {
        wire::check_pattern(
            external_id,
            "externalId",
            2,
            1224,
            "[\\w+=,.@:\\/-]*",
            "+=,.@:/-",
        )?;
    }
    let duration = params.duration(
        "DurationSeconds",
        "durationSeconds",
        MIN_DURATION,
        MAX_ASSUME_ROLE_DURATION,
    )?;
    let session_policy = match params.get("Policy") {
        None => None,
        Some(text) => {
            wire::check_length(text, "policy", 1, MAX_POLICY_LENGTH)?;
            let policy = Policy::parse(text).map_err(|error| StsError::malformed_policy(&error))?;
            Some((text, policy))
        }
    };
    let packed_size = session_policy
        .as_ref()
        .map(|(text, _)| text.len() * 100 / MAX_POLICY_LENGTH);
    let (credentials, identity) = iam
        .assume_role(
            caller,
            AssumeRoleRequest {
                role_arn,
                session_name,
                external_id,
                duration,
                session_policy,
            },
        )
        .map_err(|refusal| match refusal {
            AssumeRoleRefusal::AccessDenied => StsError::access_denied(&format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.identity.arn
            )),
            AssumeRoleRefusal::DurationExceedsRoleMaximum => StsError::validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ),
            AssumeRoleRefusal::DurationExceedsChainingLimit => StsError::validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ),
        })?;
    Ok(wire::assume_role_result(
        &credentials,
        &identity,
        packed_size,
        request_id,
    ))
}

fn get_session_token(
    iam: &Iam,
    caller: &Principal,
    params: &Params,
    request_id: &str,
) -> Result<String, StsError> {
    if caller.is_session {
        return Err(StsError::access_denied(
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    let duration = params
        .duration(
            "DurationSeconds",
            "durationSeconds",
            MIN_DURATION,
            MAX_SESSION_TOKEN_DURATION,
        )?
        .unwrap_or(Duration::from_secs(DEFAULT_SESSION_TOKEN_DURATION));
    let credentials = iam.get_session_token(caller, duration);
    Ok(wire::session_token_result(&credentials, request_id))
}

fn signature_error(refusal: SignatureRefusal) -> StsError {
    match refusal {
        SignatureRefusal::Missing => StsError::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ),
        SignatureRefusal::Malformed(message) => {
            StsError::new(StatusCode::BAD_REQUEST, "IncompleteSignature", &message)
        }
        SignatureRefusal::WrongService { expected } => StsError::signature_does_not_match(
            &format!("Credential should be scoped to correct service: '{expected}'. "),
        ),
        SignatureRefusal::Expired { signed_at, now } => {
            StsError::signature_does_not_match(&format!(
                "Signature expired: {signed_at} is now earlier than {now} (15 min. skew allowed)."
            ))
        }
        SignatureRefusal::Mismatch => StsError::signature_does_not_match(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ),
    }
}

fn credential_error(refusal: CredentialRefusal) -> StsError {
    match refusal {
        CredentialRefusal::ExpiredToken => StsError::new(
            StatusCode::FORBIDDEN,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
        CredentialRefusal::UnknownAccessKey
        | CredentialRefusal::MissingToken
        | CredentialRefusal::InvalidToken => StsError::invalid_client_token_id(),
    }
}
