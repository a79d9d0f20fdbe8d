//! The chain hash, recomputed from an export line with nothing but SHA-256 and the encoding
//! docs/audit.md describes: what an auditor's own verifier needs to do.

use base64::Engine;
use keyledger_audit::export_jsonl;
use serde_json::Value;

use crate::support::*;

/// bincode 2 "standard" unsigned varint: one byte below 251, else a marker and little-endian.
fn varint(out: &mut Vec<u8>, value: u64) {
    if value < 251 {
        out.push(value as u8);
    } else if value <= u64::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(value as u16).to_le_bytes());
    } else if value <= u64::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(value as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn bytes_with_length(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn independent_hash(line: &Value) -> Vec<u8> {
    let mut fields = Vec::new();
    varint(&mut fields, line["seq"].as_u64().unwrap());
    fields.extend_from_slice(&unhex(line["id"].as_str().unwrap()));
    bytes_with_length(&mut fields, line["stream"].as_str().unwrap().as_bytes());
    varint(&mut fields, line["version"].as_u64().unwrap());
    let time = line["time_ms"].as_i64().unwrap();
    varint(&mut fields, ((time << 1) ^ (time >> 63)) as u64);
    bytes_with_length(&mut fields, line["actor"].as_str().unwrap().as_bytes());
    match line["request_id"].as_str() {
        None => fields.push(0),
        Some(id) => {
            fields.push(1);
            fields.extend_from_slice(&unhex(id));
        }
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(line["body"].as_str().unwrap())
        .unwrap();
    bytes_with_length(&mut fields, &body);
    let prev_hash = unhex(line["prev_hash"].as_str().unwrap());
    fields.extend_from_slice(&prev_hash);
    let mut hashed = prev_hash;
    hashed.extend_from_slice(&fields);
    ring::digest::digest(&ring::digest::SHA256, &hashed)
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn the_documented_encoding_reproduces_every_hash_of_an_export() {
    let history = scripted_history().await;
    let mut export = Vec::new();
    export_jsonl(history.test.vault.log(), 1, u64::MAX, &mut export).unwrap();
    let mut previous = vec![0u8; 32];
    let mut events = 0;
    let mut with_request_id = 0;
    for line in String::from_utf8(export).unwrap().lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        if line.get("checkpoint").is_some() || line.get("end").is_some() {
            continue;
        }
        assert_eq!(unhex(line["prev_hash"].as_str().unwrap()), previous);
        let hash = independent_hash(&line);
        assert_eq!(
            hash,
            unhex(line["hash"].as_str().unwrap()),
            "seq {}",
            line["seq"]
        );
        previous = hash;
        events += 1;
        with_request_id += usize::from(line["request_id"].is_string());
    }
    assert!(events > 15);
    assert!(with_request_id > 0, "the history has a request with an id");
}
