//! `keyledger ingest s3|dnanexus … --dry-run`: what the selection picks, from
//! `POST /v1/ingestions/preview`; nothing is fetched or recorded.
//!
//! Exit codes as for a job: 0 files match, 8 the selection matched nothing.

use serde_json::Value;

use crate::client::{Client, segment};
use crate::exit::{Exit, Failure};
use crate::output::{field, print_json, print_table};

pub fn run(
    client: &Client,
    body: &Value,
    cursor: Option<&str>,
    page_size: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(cursor) = cursor {
        query.push(format!("cursor={}", segment(cursor)));
    }
    if let Some(size) = page_size {
        query.push(format!("page_size={size}"));
    }
    let path = if query.is_empty() {
        "/v1/ingestions/preview".to_owned()
    } else {
        format!("/v1/ingestions/preview?{}", query.join("&"))
    };
    let preview = client.post(&path, body)?;
    if json {
        print_json(&preview);
    } else {
        show(&preview);
    }
    if preview["matched"].as_u64() == Some(0) && preview["complete"] == true {
        return Err(Failure::new(
            Exit::NothingMatched,
            "the selection matches no file; check the bucket or project, the prefix or folder and the pattern",
        )
        .into());
    }
    Ok(())
}

fn show(preview: &Value) {
    let matched = preview["matched"].as_u64().unwrap_or(0);
    let total = preview["total_bytes"].as_u64().unwrap_or(0);
    let at_least = if preview["complete"] == true {
        ""
    } else {
        "at least "
    };
    println!(
        "Dry run: {at_least}{matched} file(s), {at_least}{} would be fetched (nothing was).",
        super::bytes(total)
    );
    if let Some(note) = preview["note"].as_str() {
        println!("Note: {note}.");
    }
    let rows: Vec<Vec<String>> = preview["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|file| {
            vec![
                field(file, "path"),
                super::bytes(file["size"].as_u64().unwrap_or(0)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print_table(&["PATH", "SIZE"], &rows);
    }
    if let Some(cursor) = preview["next_cursor"].as_str() {
        println!("More: add --cursor '{}'", cursor.replace('\'', "'\\''"));
    }
}
