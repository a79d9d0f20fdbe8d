//! What S3 answers before it looks at a signature's bytes: a request signed for another region
//! than the bucket's, and a request whose time is too far from the server's.
//!
//! The guarantee, in AWS's words: a bucket given a region ([`crate::s3::S3Server::set_bucket_region`])
//! refuses a request whose SigV4 credential scope names another region with 400
//! `AuthorizationHeaderMalformed` "… the region 'us-east-1' is wrong; expecting 'eu-west-1'",
//! its `<Region>` and the `x-amz-bucket-region` header (a HEAD answer has no body, as in S3), and
//! HeadBucket answers carry `x-amz-bucket-region`; a server clock moved
//! ([`crate::s3::S3Server::set_clock_offset`]) refuses a request dated more than 15 minutes from
//! it with 403 `RequestTimeTooSkewed` (`RequestTime`, `ServerTime`, `MaxAllowedSkewMilliseconds`).
//! Buckets without a region accept any region in the scope, and without an offset the time is
//! left to s3s, as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Response, StatusCode};
use parking_lot::Mutex;
use s3s::{Body, HttpResponse};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// How far a request's date may be from the server's, as S3 allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The regions of buckets and the server's clock offset. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Edge {
    shared: Arc<Mutex<Settings>>,
}

#[derive(Debug, Default)]
struct Settings {
    regions: HashMap<String, String>,
    /// Seconds added to the real time (negative: the server's clock is behind).
    offset_secs: i64,
}

/// What the edge decided about one request.
pub(crate) enum Verdict {
    /// Refused here, with S3's answer.
    Refuse(HttpResponse),
    /// Passed on; `Some(region)` is added as `x-amz-bucket-region` to the answer (HeadBucket).
    Pass(Option<String>),
}

impl Edge {
    pub(crate) fn set_region(&self, bucket: &str, region: &str) {
        self.shared
            .lock()
            .regions
            .insert(bucket.to_owned(), region.to_owned());
    }

    pub(crate) fn set_offset(&self, offset_secs: i64) {
        self.shared.lock().offset_secs = offset_secs;
    }

    /// Judges a request by its method, path (path-style addressing), query and headers.
    pub(crate) fn judge(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Verdict {
        let (region, offset_secs) = {
            let settings = self.shared.lock();
            let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
            (settings.regions.get(bucket).cloned(), settings.offset_secs)
        };
        let head = method == Method::HEAD;
        if offset_secs != 0
            && let Some(signed_at) = signed_at(query, headers)
        {
            let now = shifted(SystemTime::now(), offset_secs);
            let skew = now
                .duration_since(signed_at)
                .unwrap_or_else(|error| error.duration());
            if skew > MAX_SKEW {
                let body = format!(
                    "<Code>RequestTimeTooSkewed</Code><Message>The difference between the request time \
                     and the current time is too large.</Message><RequestTime>{}</RequestTime>\
                     <ServerTime>{}</ServerTime><MaxAllowedSkewMilliseconds>{}</MaxAllowedSkewMilliseconds>",
                    amz_date(signed_at),
                    OffsetDateTime::from(now)
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                    MAX_SKEW.as_millis()
                );
                return Verdict::Refuse(error(StatusCode::FORBIDDEN, &body, head, None));
            }
        }
        let Some(region) = region else {
            return Verdict::Pass(None);
        };
        if let Some(signed_for) = scope_region(query, headers)
            && signed_for != region
        {
            let body = format!(
                "<Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is \
                 malformed; the region '{signed_for}' is wrong; expecting '{region}'</Message>\
                 <Region>{region}</Region>"
            );
            return Verdict::Refuse(error(StatusCode::BAD_REQUEST, &body, head, Some(&region)));
        }
        let head_bucket = head && !path.trim_matches('/').contains('/');
        Verdict::Pass(head_bucket.then_some(region))
    }
}

/// S3's XML error document (no body for a HEAD request), with the bucket's region if known.
fn error(status: StatusCode, fields: &str, head: bool, region: Option<&str>) -> HttpResponse {
    let body = if head {
        Body::empty()
    } else {
        Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>{fields}<RequestId>KLTESTEDGE</RequestId></Error>"
        ))
    };
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/xml");
    if let Some(region) = region {
        response = response.header("x-amz-bucket-region", region);
    }
    response.body(body).unwrap_or_default()
}

/// The region of the SigV4 credential scope, from the `Authorization` header or a presigned
/// URL's `X-Amz-Credential`.
fn scope_region(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    let credential = match headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        Some(value) => value
            .split(['\u{20}', ','])
            .find_map(|part| part.strip_prefix("Credential="))
            .map(str::to_owned),
        None => query_value(query, "X-Amz-Credential"),
    }?;
    // <access key>/<date>/<region>/<service>/aws4_request
    credential.split('/').nth(2).map(str::to_owned)
}

/// When the request was signed: `X-Amz-Date`, header or query parameter.
fn signed_at(query: Option<&str>, headers: &HeaderMap) -> Option<SystemTime> {
    let text = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_value(query, "X-Amz-Date"))?;
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(&text, format).ok()?;
    Some(parsed.assume_utc().into())
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `at` moved by `offset_secs` (negative: back); also the STS test server's clock.
pub(crate) fn shifted(at: SystemTime, offset_secs: i64) -> SystemTime {
    let by = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 { at + by } else { at - by }
}

fn amz_date(at: SystemTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    OffsetDateTime::from(at).format(format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(credential: &str, date: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature=00"
            )
            .parse()
            .unwrap(),
        );
        headers.insert("x-amz-date", date.parse().unwrap());
        headers
    }

    fn now() -> String {
        amz_date(SystemTime::now())
    }

    fn verdict(edge: &Edge, method: Method, path: &str, headers: &HeaderMap) -> (u16, String) {
        match edge.judge(&method, path, None, headers) {
            Verdict::Refuse(response) => {
                let region = response
                    .headers()
                    .get("x-amz-bucket-region")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (response.status().as_u16(), region)
            }
            Verdict::Pass(region) => (200, region.unwrap_or_default()),
        }
    }

    #[test]
    fn regions_and_clocks_are_judged_as_s3_does() {
        let edge = Edge::default();
        let day = &now()[..8];
        let us = headers(&format!("AKIA/{day}/us-east-1/s3/aws4_request"), &now());
        let eu = headers(&format!("AKIA/{day}/eu-west-1/s3/aws4_request"), &now());
        // No region given: any scope passes.
        assert_eq!(
            verdict(&edge, Method::GET, "/lab", &us),
            (200, String::new())
        );
        edge.set_region("lab", "eu-west-1");
        let check = |method: Method, path: &str, headers: &HeaderMap, expect: (u16, &str)| {
            let (status, region) = verdict(&edge, method, path, headers);
            assert_eq!((status, region.as_str()), expect, "{path}");
        };
        check(Method::GET, "/lab", &us, (400, "eu-west-1"));
        check(Method::GET, "/lab/runs/a.bam", &us, (400, "eu-west-1"));
        check(Method::HEAD, "/lab", &us, (400, "eu-west-1"));
        check(Method::GET, "/lab", &eu, (200, ""));
        check(Method::HEAD, "/lab", &eu, (200, "eu-west-1"));
        check(Method::HEAD, "/lab/runs/a.bam", &eu, (200, ""));
        check(Method::GET, "/other", &us, (200, ""));
        // A clock an hour ahead refuses requests signed now; 10 minutes is within S3's 15.
        edge.set_offset(3600);
        check(Method::GET, "/other", &us, (403, ""));
        edge.set_offset(-600);
        check(Method::GET, "/other", &us, (200, ""));
    }
}
