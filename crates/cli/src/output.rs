//! What commands print: the API's JSON as is with `--json`, tables and sentences otherwise.

use serde_json::Value;

/// Prints `value` as pretty JSON (the `--json` output: the API's own JSON).
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A field of a JSON object as display text: `-` for null or missing.
pub fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(",")
            }
        }
        Some(other) => other.to_string(),
    }
}

/// A time field shortened to the minute with its time zone (`2026-11-26 16:24 UTC`), or
/// `-`/`never`. The API answers in UTC, and so does the CLI: a time without its zone is read as
/// local time by whoever reads it.
/// A key's status with what its owner should notice: the expiry horizon announced for it
/// (`active, expires within 7d`) and whether it is a honeytoken.
pub fn marked_status(key: &Value) -> String {
    let mut status = field(key, "status");
    if let Some(days) = key.get("expiry_warning_days").and_then(Value::as_u64) {
        status.push_str(&format!(", expires within {days}d"));
    }
    if key.get("honeytoken").and_then(Value::as_bool) == Some(true) {
        status.push_str(", honeytoken");
    }
    status
}

pub fn time(value: &Value, name: &str, none: &str) -> String {
    match value.get(name).and_then(Value::as_str) {
        Some(text) => minute_with_zone(text),
        None => none.to_owned(),
    }
}

/// `2026-11-26T16:24:57.123Z` → `2026-11-26 16:24 UTC`; another offset is kept (`+01:00`).
/// Anything that is not an RFC 3339 time is shown as it is.
pub fn minute_with_zone(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.len() < 17 || bytes[10] != b'T' || !text.is_char_boundary(16) {
        return text.to_owned();
    }
    let zone = if text.ends_with('Z') || text.ends_with("+00:00") {
        "UTC"
    } else {
        match text.len().checked_sub(6).map(|at| &text[at..]) {
            Some(offset)
                if offset.len() == 6
                    && matches!(offset.as_bytes()[0], b'+' | b'-')
                    && offset.as_bytes()[3] == b':' =>
            {
                offset
            }
            _ => return text.to_owned(),
        }
    };
    format!("{} {} {zone}", &text[..10], &text[11..16])
}

/// How `keys list` and `external list` narrow and order what they show. The API has no query
/// parameters for this, so it is done here, in the client, on the whole list the server returns
/// (a user's own keys), and the same way for the table and for `--json`: filters first, then
/// the order, then the limit.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Show at most N keys (after filtering and sorting).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Order by name (A to Z), created (newest first), expires (soonest first, never last) or
    /// last-used (most recent first, never-used last) [default: as the server lists them].
    #[arg(long, value_enum, value_name = "FIELD")]
    pub sort: Option<SortBy>,
    /// Only keys whose name (label, for external keys) contains this text, ignoring case.
    #[arg(long, value_name = "SUBSTRING")]
    pub name: Option<String>,
    /// Only keys with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Name,
    Created,
    Expires,
    LastUsed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Active,
    Expired,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Active => "active",
            StatusFilter::Expired => "expired",
        }
    }
}

impl ListArgs {
    /// `list` with its `items` array filtered, sorted and cut as asked; every other field of the
    /// answer is kept. `name_field` is what `--name` and `--sort name` look at.
    pub fn apply(&self, list: &Value, items_name: &str, name_field: &str) -> Value {
        let needle = self.name.as_deref().map(str::to_lowercase);
        let mut kept: Vec<Value> = items(list, items_name)
            .iter()
            .filter(|item| {
                needle.as_ref().is_none_or(|needle| {
                    text_of(item, name_field)
                        .to_lowercase()
                        .contains(needle.as_str())
                })
            })
            .filter(|item| {
                self.status
                    .is_none_or(|status| text_of(item, "status") == status.as_str())
            })
            .cloned()
            .collect();
        if let Some(sort) = self.sort {
            // RFC 3339 times in UTC with milliseconds compare correctly as text.
            kept.sort_by(|a, b| {
                let order = match sort {
                    SortBy::Name => text_of(a, name_field)
                        .to_lowercase()
                        .cmp(&text_of(b, name_field).to_lowercase()),
                    SortBy::Created => text_of(b, "created_at").cmp(text_of(a, "created_at")),
                    SortBy::Expires => none_last(a, b, "expires_at", |x, y| x.cmp(y)),
                    SortBy::LastUsed => none_last(a, b, "last_used_at", |x, y| y.cmp(x)),
                };
                order.then_with(|| text_of(a, "id").cmp(text_of(b, "id")))
            });
        }
        if let Some(limit) = self.limit {
            kept.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let mut narrowed = list.clone();
        if let Some(object) = narrowed.as_object_mut() {
            object.insert(items_name.to_owned(), Value::Array(kept));
        }
        narrowed
    }

    /// Whether any filter is set (an empty result then says so, rather than "no keys").
    pub fn filters(&self) -> bool {
        self.name.is_some() || self.status.is_some()
    }
}

fn text_of<'a>(item: &'a Value, name: &str) -> &'a str {
    item.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Orders by a time that may be missing (never expires, never used): missing ones go last.
fn none_last(
    a: &Value,
    b: &Value,
    name: &str,
    order: impl Fn(&str, &str) -> std::cmp::Ordering,
) -> std::cmp::Ordering {
    let a = a.get(name).and_then(Value::as_str);
    let b = b.get(name).and_then(Value::as_str);
    match (a, b) {
        (Some(a), Some(b)) => order(a, b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Items of a list response (`{"keys": [...]}`).
pub fn items<'a>(value: &'a Value, name: &str) -> &'a [Value] {
    value
        .get(name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_status_is_marked_with_the_announced_horizon_and_honeytokens() {
        let check = |key: Value, expect: &str| assert_eq!(marked_status(&key), expect, "{key}");
        check(json!({ "status": "active" }), "active");
        check(
            json!({ "status": "active", "expiry_warning_days": null, "honeytoken": false }),
            "active",
        );
        check(
            json!({ "status": "active", "expiry_warning_days": 7 }),
            "active, expires within 7d",
        );
        check(
            json!({ "status": "active", "honeytoken": true }),
            "active, honeytoken",
        );
        check(json!({ "status": "expired" }), "expired");
    }

    #[test]
    fn times_carry_their_zone() {
        let check = |input: &str, expect: &str| assert_eq!(minute_with_zone(input), expect);
        check("2026-11-26T16:24:57.123Z", "2026-11-26 16:24 UTC");
        check("2026-11-26T16:24:57+00:00", "2026-11-26 16:24 UTC");
        check("2026-11-26T17:24:57.5+01:00", "2026-11-26 17:24 +01:00");
        check("2026-11-26", "2026-11-26");
        check("soon", "soon");
    }

    #[test]
    fn lists_are_filtered_then_sorted_then_cut() {
        let list = json!({ "keys": [
            { "id": "key_a", "name": "Laptop", "status": "active", "created_at": "2026-01-02T00:00:00.000Z",
              "expires_at": null, "last_used_at": "2026-01-05T00:00:00.000Z" },
            { "id": "key_b", "name": "ci", "status": "expired", "created_at": "2026-01-03T00:00:00.000Z",
              "expires_at": "2026-01-04T00:00:00.000Z", "last_used_at": null },
            { "id": "key_c", "name": "laptop 2", "status": "active", "created_at": "2026-01-01T00:00:00.000Z",
              "expires_at": "2026-03-01T00:00:00.000Z", "last_used_at": "2026-01-06T00:00:00.000Z" },
        ], "other": 1 });
        let check = |args: ListArgs, expect: &[&str]| {
            let narrowed = args.apply(&list, "keys", "name");
            let ids: Vec<&str> = items(&narrowed, "keys")
                .iter()
                .map(|k| k["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, expect, "{args:?}");
            assert_eq!(narrowed["other"], 1);
        };
        let args = |sort: Option<SortBy>,
                    name: Option<&str>,
                    status: Option<StatusFilter>,
                    limit: Option<u64>| ListArgs {
            limit,
            sort,
            name: name.map(str::to_owned),
            status,
        };
        check(args(None, None, None, None), &["key_a", "key_b", "key_c"]);
        check(
            args(Some(SortBy::Name), None, None, None),
            &["key_b", "key_a", "key_c"],
        );
        check(
            args(Some(SortBy::Created), None, None, None),
            &["key_b", "key_a", "key_c"],
        );
        check(
            args(Some(SortBy::Expires), None, None, None),
            &["key_b", "key_c", "key_a"],
        );
        check(
            args(Some(SortBy::LastUsed), None, None, None),
            &["key_c", "key_a", "key_b"],
        );
        check(args(None, Some("LAPTOP"), None, None), &["key_a", "key_c"]);
        check(
            args(None, None, Some(StatusFilter::Expired), None),
            &["key_b"],
        );
        check(
            args(
                Some(SortBy::Created),
                Some("lap"),
                Some(StatusFilter::Active),
                Some(1),
            ),
            &["key_a"],
        );
    }
}
