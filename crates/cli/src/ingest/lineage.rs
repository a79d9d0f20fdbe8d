//! `keyledger ingest lineage PATH`: where a stored sample file came from
//! (`GET /v1/samples?path=…`): source and version, external key, time, SHA-256, and the other
//! versions of the same remote file.

use serde_json::Value;

use crate::client::{Client, segment};
use crate::output::{field, print_json, print_table, time};

pub fn run(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let lineage = client.get(&format!("/v1/samples?path={}", segment(path)))?;
    if json {
        print_json(&lineage);
        return Ok(());
    }
    println!("{}", field(&lineage, "path"));
    println!("  source:       {}", source(&lineage["source"]));
    println!("  sha256:       {}", field(&lineage, "sha256"));
    println!(
        "  size:         {}",
        super::bytes(lineage["size"].as_u64().unwrap_or(0))
    );
    println!("  external key: {}", field(&lineage, "external_key"));
    println!("  fetched:      {}", time(&lineage, "fetched_at", "-"));
    println!("  ingestion:    {}", field(&lineage, "ingestion"));
    for (title, key) in [("Earlier versions", "earlier"), ("Later versions", "later")] {
        let rows: Vec<Vec<String>> = lineage[key]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|version| {
                vec![
                    time(version, "fetched_at", "-"),
                    field(version, "path"),
                    source(&version["source"]),
                    field(version, "sha256"),
                ]
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        println!("{title}:");
        print_table(&["FETCHED", "PATH", "SOURCE", "SHA256"], &rows);
    }
    Ok(())
}

/// `s3://bucket/key (ETag …)` or `project:file-id`.
fn source(source: &Value) -> String {
    match (source["bucket"].as_str(), source["project"].as_str()) {
        (Some(bucket), _) => format!(
            "s3://{bucket}/{} (ETag {})",
            field(source, "key"),
            field(source, "etag")
        ),
        (None, Some(project)) => format!("{project}:{}", field(source, "file_id")),
        _ => "-".to_owned(),
    }
}
