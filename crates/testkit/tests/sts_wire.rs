//! What the STS and S3 test servers answer on the wire where no SDK call shows it: an unsigned
//! STS request, and presigned S3 URLs that carry the session token in the query string.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::lab::*;

/// Sends one HTTP/1.1 request and returns the status and body (the server closes after it).
async fn exchange(endpoint: &str, method: &str, path_and_query: &str, body: &str) -> (u16, String) {
    let authority = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_sts_request_gets_aws_error_xml() {
    let lab = lab().await;
    let (status, body) = exchange(
        &lab.sts.endpoint(),
        "POST",
        "/",
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(status, 403);
    for part in [
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">",
        "<Type>Sender</Type>",
        "<Code>MissingAuthenticationToken</Code>",
        "<Message>Request is missing Authentication Token</Message>",
        "<RequestId>",
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_carry_the_session_token_and_expire_with_it() {
    let lab = lab().await;
    let output = sts_client(&lab, PLATFORM_KEY, PLATFORM_SECRET, None)
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("presign")
        .external_id(EXTERNAL_ID)
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let credentials = output.credentials().unwrap();
    let client = s3_client(
        &lab,
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token()),
    );
    let lab = &lab;
    let presign = |key: &'static str| {
        let client = client.clone();
        async move {
            let request = client
                .get_object()
                .bucket("lab")
                .key(key)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
                .await
                .unwrap();
            let uri = request.uri().to_owned();
            assert!(uri.contains("X-Amz-Security-Token="), "{uri}");
            let path = uri.trim_start_matches(&lab.s3.endpoint()).to_owned();
            exchange(&lab.s3.endpoint(), "GET", &path, "").await
        }
    };
    assert_eq!(presign("runs/a.fastq").await, (200, "ACGTACGT".to_owned()));
    let (status, body) = presign("other/c.fastq").await;
    assert_eq!(status, 403);
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");

    lab.s3.iam().clock().advance(Duration::from_secs(900));
    let (status, body) = presign("runs/a.fastq").await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>ExpiredToken</Code>"), "{body}");
}
