//! The HTTP side: connections, fault application, API responses and ranged data GETs.

use std::fs::File;
use std::io;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::api::{self, ApiCall};
use super::error::ApiError;
use super::seed::hex;
use super::state::{Shared, now_ms};
use super::{DATA_PATH_PREFIX, Fault, RequestRecord};

/// Largest accepted API request body.
const MAX_BODY_BYTES: usize = 16 << 20;
/// Requests remembered for [`super::EmulatorControl::requests`].
const MAX_REQUEST_RECORDS: usize = 100_000;
/// Size of one read of file content while serving a data GET.
const DATA_READ_BYTES: u64 = 512 << 10;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set, so aborting the server task closes them too.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: back off briefly instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Responses go out in one write each; without NODELAY a kept-alive connection waits ~40 ms.
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), peer, request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Dropping the connection without an answer is the service's error.
type Outcome = Result<Response<ResponseBody>, io::Error>;

async fn handle(shared: Arc<Shared>, peer: SocketAddr, request: Request<Incoming>) -> Outcome {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let range = request
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let data = path.starts_with(DATA_PATH_PREFIX);
    let fault = shared
        .with_state(|state| take_fault(&mut state.faults, &path, data && method == Method::GET));
    let record = |status: u16| {
        shared.with_state(|state| {
            // A long-running emulator keeps the most recent records only.
            if state.requests.len() >= MAX_REQUEST_RECORDS {
                state.requests.drain(..MAX_REQUEST_RECORDS / 10);
            }
            state.requests.push(RequestRecord {
                method: method.to_string(),
                path: path.clone(),
                authorization: authorization.clone(),
                range: range.clone(),
                status,
                data,
            })
        })
    };

    let mut truncate_after = None;
    match fault {
        Some(Fault::Disconnect) => {
            record(0);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped by fault injection",
            ));
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let mut error = ApiError::for_status(status);
            error.retry_after = retry_after;
            record(error.status);
            return Ok(error_response(&error));
        }
        Some(Fault::Error {
            status,
            kind,
            message,
        }) => {
            let error = ApiError::new(status, &kind, message);
            record(error.status);
            return Ok(error_response(&error));
        }
        Some(Fault::TruncateBody { after_bytes }) => truncate_after = Some(after_bytes),
        None => {}
    }

    let response = if data {
        serve_data(&shared, &request, &path, truncate_after)
    } else {
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        serve_api(
            &shared,
            peer,
            request,
            &path,
            authorization.as_deref(),
            host,
        )
        .await
    };
    record(response.status().as_u16());
    Ok(response)
}

/// Consumes one application of the first matching fault run.
fn take_fault(runs: &mut Vec<super::FaultRun>, path: &str, data_get: bool) -> Option<Fault> {
    let index = runs.iter().position(|run| {
        run.times > 0
            && run
                .path_contains
                .as_deref()
                .is_none_or(|fragment| path.contains(fragment))
            && (data_get || !matches!(run.fault, Fault::TruncateBody { .. }))
    })?;
    let run = &mut runs[index];
    run.times -= 1;
    let fault = run.fault.clone();
    if run.times == 0 {
        runs.remove(index);
    }
    Some(fault)
}

async fn serve_api(
    shared: &Shared,
    peer: SocketAddr,
    request: Request<Incoming>,
    path: &str,
    authorization: Option<&str>,
    host: Option<String>,
) -> Response<ResponseBody> {
    if request.method() != Method::POST {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "API methods must be called with POST",
        ));
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return error_response(&ApiError::malformed_json());
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error_response(&ApiError::malformed_json()),
    };
    let Some((subject, method)) = path.trim_start_matches('/').split_once('/') else {
        return error_response(&ApiError::not_found(format!(
            "The route {path} does not exist"
        )));
    };
    let url_key = if method == "download" {
        random_key()
    } else {
        String::new()
    };
    let call = ApiCall {
        subject,
        method,
        authorization,
        body: &body,
        client_ip: peer.ip().to_string(),
        base_url: format!(
            "http://{}",
            host.unwrap_or_else(|| shared.address.to_string())
        ),
        now_ms: now_ms(),
        url_key,
    };
    match shared.with_state(|state| api::dispatch(state, &call)) {
        Ok(output) => json_response(StatusCode::OK, output.to_string().into_bytes()),
        Err(error) => error_response(&error),
    }
}

fn serve_data(
    shared: &Shared,
    request: &Request<Incoming>,
    path: &str,
    truncate_after: Option<u64>,
) -> Response<ResponseBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "Download URLs accept GET and HEAD",
        ));
    }
    // /F/D/<file id>/<key>/<name>
    let mut segments = path[DATA_PATH_PREFIX.len()..].split('/');
    let (file_id, key) = match (segments.next(), segments.next(), segments.next()) {
        (Some("D"), Some(file_id), Some(key)) => (file_id, key),
        _ => return error_response(&ApiError::not_found("No such download URL")),
    };
    let now = now_ms();
    let target: Result<(PathBuf, u64), ApiError> = shared.with_state(|state| {
        let download = state
            .downloads
            .get(key)
            .filter(|download| download.file == file_id);
        let Some(download) = download else {
            return Err(ApiError::not_found("No such download URL"));
        };
        if download.expires_ms <= now {
            return Err(ApiError::new(
                403,
                "PermissionDenied",
                "The download URL has expired",
            ));
        }
        let file = state
            .files
            .get(&download.file)
            .ok_or_else(|| ApiError::not_found("The file no longer exists"))?;
        Ok((file.disk_path.clone(), file.size))
    });
    let (disk_path, size) = match target {
        Ok(target) => target,
        Err(error) => return error_response(&error),
    };

    let range = match request.headers().get(hyper::header::RANGE) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|text| parse_range(text, size)) {
            Some(range) => Some(range),
            None => {
                let mut response = error_response(&ApiError::new(
                    416,
                    "RequestedRangeNotSatisfiable",
                    "Only one satisfiable byte range is supported",
                ));
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(CONTENT_RANGE, value);
                }
                return response;
            }
        },
    };
    let (start, len, status) = match range {
        Some((start, end)) => (start, end - start + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let body = if request.method() == Method::HEAD {
        ResponseBody::Full(None)
    } else {
        stream_file(disk_path, start, len, truncate_after)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        hyper::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        headers.insert(CONTENT_RANGE, value);
    }
    response
}

/// One range `bytes=a-b`, `bytes=a-` or `bytes=-n`, as inclusive `(start, end)` within `size`.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size - 1
        } else {
            last.parse::<u64>().ok()?.min(size - 1)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

/// Streams `len` bytes from `start` on a blocking thread (its own file handle, so reads need no
/// shared position). With
/// `truncate_after`, stops after that many bytes and fails the body, which closes the connection
/// short of the advertised length.
fn stream_file(path: PathBuf, start: u64, len: u64, truncate_after: Option<u64>) -> ResponseBody {
    if truncate_after.is_none() && len <= DATA_READ_BYTES {
        // One read from the page cache costs less than the hop to a blocking thread. A read
        // that fails goes the streaming way, which reports the error in the body.
        let inline = File::open(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(start))?;
            read_chunk(&mut file, len)
        });
        if let Ok(bytes) = inline {
            return ResponseBody::Full(Some(Bytes::from(bytes)));
        }
    }
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        let mut file = match File::open(&path)
            .and_then(|mut file| file.seek(SeekFrom::Start(start)).map(|_| file))
        {
            Ok(file) => file,
            Err(error) => {
                let _ = sender.blocking_send(Err(error));
                return;
            }
        };
        let end = start + len;
        let stop = truncate_after.map_or(end, |after| start + after.min(len));
        let mut offset = start;
        while offset < stop {
            let want = DATA_READ_BYTES.min(stop - offset);
            let buffer = match read_chunk(&mut file, want) {
                Ok(buffer) => buffer,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            offset += want;
            if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                return; // The client went away.
            }
        }
        if stop < end {
            // Let hyper flush what was sent (it does while the body is pending) before failing
            // the body, which drops the connection with anything still buffered.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let _ = sender.blocking_send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "truncated by fault injection",
            )));
        }
    });
    ResponseBody::Stream {
        receiver,
        remaining: len,
    }
}

/// The next `len` bytes of `file`, all of them or an error.
fn read_chunk(file: &mut File, len: u64) -> io::Result<Vec<u8>> {
    // read_to_end fills spare capacity without zeroing it first.
    let mut bytes = Vec::with_capacity(len as usize);
    if file.take(len).read_to_end(&mut bytes)? as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(bytes)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let len = body.len() as u64;
    let mut response = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, error.body());
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn random_key() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails when the OS has no entropy source; a fixed key still works then.
    let _ = SystemRandom::new().fill(&mut bytes);
    hex(&bytes)
}

/// A body whose size is known up front: either in memory, or streamed from a reader thread.
pub(crate) enum ResponseBody {
    Full(Option<Bytes>),
    Stream {
        receiver: mpsc::Receiver<io::Result<Bytes>>,
        remaining: u64,
    },
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
            ResponseBody::Stream {
                receiver,
                remaining,
            } => match receiver.poll_recv(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    *remaining = remaining.saturating_sub(bytes.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Stream { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            ResponseBody::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        let check = |header: &str, size: u64, expected: Option<(u64, u64)>| {
            assert_eq!(parse_range(header, size), expected, "{header}")
        };
        check("bytes=0-9", 100, Some((0, 9)));
        check("bytes=90-200", 100, Some((90, 99)));
        check("bytes=10-", 100, Some((10, 99)));
        check("bytes=-10", 100, Some((90, 99)));
        check("bytes=-1000", 100, Some((0, 99)));
        check("bytes=100-", 100, None);
        check("bytes=5-4", 100, None);
        check("bytes=0-1,5-6", 100, None);
        check("items=0-1", 100, None);
        check("bytes=0-0", 0, None);
    }
}
