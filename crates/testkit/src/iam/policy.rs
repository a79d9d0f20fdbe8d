//! IAM policy documents, as much of them as least-privilege tests need: `Allow` and `Deny`
//! statements with `Action` and `Resource` (strings or lists, `*` and `?` wildcards) and
//! `String{Equals,Like,NotEquals,NotLike}` conditions. Anything else in a statement is refused
//! when the policy is parsed, so a test never believes it configured a rule the server ignores.

use serde_json::{Map, Value, json};

/// A parsed policy document.
#[derive(Clone, Debug)]
pub struct Policy {
    document: Value,
    statements: Vec<Statement>,
}

/// Why a policy document was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the policy is not supported by the test server: {0}")]
    Unsupported(String),
}

/// What a policy says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// An explicit `Deny` statement matched: nothing else can allow the request.
    Deny,
    /// No statement matched: the request is implicitly denied.
    NotAllowed,
}

/// One action on one resource, with the condition keys S3 supplies for it.
#[derive(Clone, Debug)]
pub(crate) struct AccessRequest {
    /// `s3:GetObject`, `sts:AssumeRole`, …
    pub action: String,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: String,
    /// Condition keys (lower case) and their values, such as `s3:prefix`.
    pub context: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

#[derive(Clone, Debug)]
struct Condition {
    operator: Operator,
    /// Lower case: condition keys are case-insensitive.
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
/// IAM's `String…` condition operators.
enum Operator {
    Equals,
    NotEquals,
    Like,
    NotLike,
}

impl Policy {
    /// Parses a policy document (IAM's JSON grammar, the subset described above).
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let document: Value = serde_json::from_str(json)?;
        let statements = match document.get("Statement") {
            Some(Value::Array(items)) => items.iter().map(parse_statement).collect(),
            Some(item @ Value::Object(_)) => parse_statement(item).map(|one| vec![one]),
            _ => Err(unsupported("a policy needs a Statement object or list")),
        }?;
        Ok(Policy {
            document,
            statements,
        })
    }

    /// Read-only access to `s3://bucket/prefix*`: ListBucket limited to keys under `prefix` (an
    /// `s3:prefix` condition) and GetObject on `bucket/prefix*` — the policy a security team
    /// writes for a platform that ingests one folder.
    pub fn read_only(bucket: &str, prefix: &str) -> Policy {
        let document = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": format!("arn:aws:s3:::{bucket}"),
                    "Condition": {"StringLike": {"s3:prefix": format!("{prefix}*")}}
                },
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*")
                }
            ]
        });
        Policy::parse(&document.to_string()).expect("the read-only policy is well formed")
    }

    /// Everything allowed.
    pub fn allow_all() -> Policy {
        let document = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
        });
        Policy::parse(&document.to_string()).expect("the allow-all policy is well formed")
    }

    /// The document as JSON text (to send as an AssumeRole session `Policy`).
    pub fn to_json(&self) -> String {
        self.document.to_string()
    }

    pub(crate) fn evaluate(&self, request: &AccessRequest) -> Verdict {
        let mut verdict = Verdict::NotAllowed;
        for statement in &self.statements {
            if !statement.matches(request) {
                continue;
            }
            if !statement.allow {
                return Verdict::Deny;
            }
            verdict = Verdict::Allow;
        }
        verdict
    }
}

impl Statement {
    fn matches(&self, request: &AccessRequest) -> bool {
        let action = request.action.to_ascii_lowercase();
        self.actions
            .iter()
            .any(|pattern| wildcard_match(&pattern.to_ascii_lowercase(), &action))
            && self
                .resources
                .iter()
                .any(|pattern| wildcard_match(pattern, &request.resource))
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(&request.context))
    }
}

impl Condition {
    fn holds(&self, context: &[(String, String)]) -> bool {
        let value = context
            .iter()
            .find(|(key, _)| *key == self.key)
            .map(|(_, value)| value.as_str());
        // IAM: a positive operator on a missing key is false, a negated one is true.
        let Some(value) = value else {
            return matches!(self.operator, Operator::NotEquals | Operator::NotLike);
        };
        let equal = self.values.iter().any(|expected| expected == value);
        let like = self
            .values
            .iter()
            .any(|pattern| wildcard_match(pattern, value));
        match self.operator {
            Operator::Equals => equal,
            Operator::NotEquals => !equal,
            Operator::Like => like,
            Operator::NotLike => !like,
        }
    }
}

fn parse_statement(value: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(fields) = value else {
        return Err(unsupported("a Statement must be an object"));
    };
    for name in fields.keys() {
        if !matches!(
            name.as_str(),
            "Sid" | "Effect" | "Action" | "Resource" | "Condition" | "Principal"
        ) {
            return Err(unsupported(&format!("statement element {name}")));
        }
    }
    let allow = match fields.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(unsupported("Effect must be Allow or Deny")),
    };
    Ok(Statement {
        allow,
        actions: strings(fields, "Action")?,
        resources: strings(fields, "Resource")?,
        conditions: match fields.get("Condition") {
            None => Vec::new(),
            Some(Value::Object(conditions)) => parse_conditions(conditions)?,
            Some(_) => return Err(unsupported("Condition must be an object")),
        },
    })
}

fn parse_conditions(conditions: &Map<String, Value>) -> Result<Vec<Condition>, PolicyError> {
    let mut parsed = Vec::new();
    for (operator, keys) in conditions {
        let operator = match operator.as_str() {
            "StringEquals" => Operator::Equals,
            "StringNotEquals" => Operator::NotEquals,
            "StringLike" => Operator::Like,
            "StringNotLike" => Operator::NotLike,
            other => return Err(unsupported(&format!("condition operator {other}"))),
        };
        let Value::Object(keys) = keys else {
            return Err(unsupported("a condition operator needs an object of keys"));
        };
        for key in keys.keys() {
            parsed.push(Condition {
                operator,
                key: key.to_ascii_lowercase(),
                values: strings(keys, key)?,
            });
        }
    }
    Ok(parsed)
}

fn strings(fields: &Map<String, Value>, name: &str) -> Result<Vec<String>, PolicyError> {
    let as_string = |value: &Value| value.as_str().map(str::to_owned);
    match fields.get(name) {
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                as_string(item)
                    .ok_or_else(|| unsupported(&format!("{name} entries must be strings")))
            })
            .collect(),
        _ => Err(unsupported(&format!(
            "{name} must be a string or a list of strings"
        ))),
    }
}

fn unsupported(what: &str) -> PolicyError {
    PolicyError::Unsupported(what.to_owned())
}

/// IAM's wildcards: `*` matches any run of characters (`/` included), `?` any one character.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: &str, resource: &str, prefix: Option<&str>) -> AccessRequest {
        AccessRequest {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: prefix
                .map(|prefix| vec![("s3:prefix".to_owned(), prefix.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn wildcards() {
        let check = |pattern: &str, text: &str, expected: bool| {
            assert_eq!(
                wildcard_match(pattern, text),
                expected,
                "{pattern} vs {text}"
            );
        };
        check("runs/*", "runs/", true);
        check("runs/*", "runs/a/b.fastq", true);
        check("runs/*", "runs", false);
        check("runs/*", "other/runs/", false);
        check("*", "", true);
        check("a?c", "abc", true);
        check("a?c", "ac", false);
        check("a*b*c", "axxbyyc", true);
        check("a*b*c", "axxbyy", false);
        check("arn:aws:s3:::lab/runs/*", "arn:aws:s3:::lab/runs/x", true);
    }

    #[test]
    fn read_only_allows_exactly_the_prefix() {
        let policy = Policy::read_only("lab", "runs/");
        let check = |action: &str, resource: &str, prefix: Option<&str>, expected: Verdict| {
            assert_eq!(
                policy.evaluate(&request(action, resource, prefix)),
                expected,
                "{action} {resource} {prefix:?}"
            );
        };
        use Verdict::{Allow, NotAllowed};
        check("s3:ListBucket", "arn:aws:s3:::lab", Some("runs/"), Allow);
        check(
            "s3:ListBucket",
            "arn:aws:s3:::lab",
            Some("runs/2024/"),
            Allow,
        );
        check(
            "s3:ListBucket",
            "arn:aws:s3:::lab",
            Some("other/"),
            NotAllowed,
        );
        check("s3:ListBucket", "arn:aws:s3:::lab", Some(""), NotAllowed);
        check("s3:ListBucket", "arn:aws:s3:::lab", None, NotAllowed);
        check(
            "s3:ListBucket",
            "arn:aws:s3:::other",
            Some("runs/"),
            NotAllowed,
        );
        check("s3:GetObject", "arn:aws:s3:::lab/runs/a.bam", None, Allow);
        check("S3:GETOBJECT", "arn:aws:s3:::lab/runs/a.bam", None, Allow);
        check(
            "s3:GetObject",
            "arn:aws:s3:::lab/other/a.bam",
            None,
            NotAllowed,
        );
        check(
            "s3:PutObject",
            "arn:aws:s3:::lab/runs/a.bam",
            None,
            NotAllowed,
        );
    }

    #[test]
    fn deny_wins_and_negated_conditions_hold_without_the_key() {
        let policy = Policy::parse(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:ListBucket","Resource":"*",
                 "Condition":{"StringNotLike":{"s3:prefix":"runs/*"}}}]}"#,
        )
        .unwrap();
        let verdict =
            |prefix| policy.evaluate(&request("s3:ListBucket", "arn:aws:s3:::lab", prefix));
        assert_eq!(verdict(Some("runs/")), Verdict::Allow);
        assert_eq!(verdict(Some("other/")), Verdict::Deny);
        assert_eq!(verdict(None), Verdict::Deny);
    }

    #[test]
    fn unsupported_documents_are_refused() {
        let check = |json: &str| {
            assert!(Policy::parse(json).is_err(), "{json}");
        };
        check("not json");
        check(r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#);
        check(r#"{"Statement":[{"Effect":"Allow","NotAction":"s3:*","Resource":"*"}]}"#);
        check(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"1.2.3.4"}}}]}"#,
        );
        check(r#"{"Version":"2012-10-17"}"#);
    }
}
