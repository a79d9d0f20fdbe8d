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

/// A time field shortened to the minute (`2026-11-26 16:24`), or `-`/`never`.
pub fn time(value: &Value, name: &str, none: &str) -> String {
    match value.get(name).and_then(Value::as_str) {
        Some(text) if text.len() >= 16 => format!("{} {}", &text[..10], &text[11..16]),
        Some(text) => text.to_owned(),
        None => none.to_owned(),
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
