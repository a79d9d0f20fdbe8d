//! The public wire format: every event type documented, snapshotted, and the docs generated
//! from the same source so they cannot drift. Set `KEYLEDGER_UPDATE_DOCS=1` to regenerate
//! `docs/events.md` (between its markers) and `docs/events.schema.json`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use keyledger_bus::schema::{
    ENVELOPE_FIELDS, EVENT_DOCS, documented_type, example_envelope, example_events, json_schema,
    matches_type, render_markdown,
};
use keyledger_bus::{BusConfig, format_line};
use keyledger_domain::Event;

fn envelopes() -> Vec<(Event, serde_json::Value)> {
    example_events()
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let json =
                serde_json::to_value(example_envelope(&event, 1000 + index as u64)).expect("JSON");
            (event, json)
        })
        .collect()
}

#[test]
fn every_event_type_is_documented_and_its_json_has_exactly_the_documented_fields() {
    let examples = envelopes();
    let documented: BTreeSet<&str> = EVENT_DOCS.iter().map(|doc| doc.type_name).collect();
    let exemplified: BTreeSet<&str> = examples
        .iter()
        .map(|(event, _)| documented_type(event))
        .collect();
    assert_eq!(documented, exemplified);
    assert_eq!(
        documented.len(),
        EVENT_DOCS.len(),
        "a type is documented twice"
    );

    for (event, json) in &examples {
        let doc = EVENT_DOCS
            .iter()
            .find(|doc| doc.type_name == event.type_name())
            .expect("documented");
        assert_eq!(
            doc.subject_suffix,
            event.subject_suffix(),
            "{}",
            doc.type_name
        );
        assert_eq!(json["type"], doc.type_name);
        let object = json.as_object().expect("an object");
        let envelope_fields: BTreeSet<&str> = ENVELOPE_FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(
            object.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            envelope_fields
        );
        for field in ENVELOPE_FIELDS {
            assert!(
                matches_type(field, &json[field.name]),
                "{}.{}",
                doc.type_name,
                field.name
            );
        }
        let data = json["data"].as_object().expect("data is an object");
        let expected: BTreeSet<&str> = doc.fields.iter().map(|field| field.name).collect();
        assert_eq!(
            data.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            expected,
            "{}",
            doc.type_name
        );
        for field in doc.fields {
            assert!(
                matches_type(field, &data[field.name]),
                "{}.{} = {}",
                doc.type_name,
                field.name,
                data[field.name]
            );
        }
        // The examples carry a key hash (0x7e…) and ciphertext (0xc1…): neither may show.
        let text = json.to_string();
        for hidden in [
            "7e7e7e7e",
            "c1c1c1c1",
            "126,126,126",
            "193,193,193",
            "secret_hash",
            "sealed",
            "ciphertext",
        ] {
            assert!(
                !text.contains(hidden),
                "{} leaks {hidden}: {text}",
                doc.type_name
            );
        }
    }
}

#[test]
fn public_json_of_every_event_type() {
    let mut counts = std::collections::HashMap::new();
    for (event, json) in envelopes() {
        let count = counts.entry(event.type_name()).or_insert(0);
        *count += 1;
        let name = if *count == 1 {
            event.type_name().to_owned()
        } else {
            format!("{}_{count}", event.type_name())
        };
        insta::assert_json_snapshot!(name, json);
    }
}

#[test]
fn tail_lines_of_every_event_type() {
    let lines: Vec<String> = example_events()
        .iter()
        .enumerate()
        .map(|(index, event)| format_line(&example_envelope(event, 1000 + index as u64)))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

/// `docs/events.md` names every event type of the derived catalogue with its subject, and no
/// other: its table of types is read back and compared with the catalogue.
#[test]
fn events_md_names_every_event_with_its_subject_and_none_else() {
    let config = BusConfig::default();
    let text = std::fs::read_to_string(docs_dir().join("events.md")).expect("docs/events.md");
    let listed: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| [`")?;
            let (type_name, rest) = rest.split_once('`')?;
            let subject = rest.split('`').nth(1)?;
            Some((type_name.to_owned(), subject.to_owned()))
        })
        .collect();
    let catalogue: BTreeSet<(String, String)> = EVENT_DOCS
        .iter()
        .map(|doc| {
            assert!(
                !doc.subject_suffix.is_empty(),
                "{} has no subject",
                doc.type_name
            );
            assert!(!doc.summary.is_empty(), "{} has no summary", doc.type_name);
            (
                doc.type_name.to_owned(),
                config.public_subject(doc.subject_suffix),
            )
        })
        .collect();
    assert_eq!(listed, catalogue);
}

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

const BEGIN: &str = "<!-- BEGIN GENERATED: cargo test -p keyledger-bus --test tests schema (KEYLEDGER_UPDATE_DOCS=1 rewrites) -->";
const END: &str = "<!-- END GENERATED -->";

#[test]
fn docs_are_generated_from_the_schema() {
    let update = std::env::var_os("KEYLEDGER_UPDATE_DOCS").is_some();
    let config = BusConfig::default();

    let path = docs_dir().join("events.md");
    let text = std::fs::read_to_string(&path).expect("docs/events.md");
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/events.md lacks the generated-section markers");
    };
    let generated = format!("{BEGIN}\n\n{}\n{END}", render_markdown(&config));
    let current = &text[begin..end + END.len()];
    if update && current != generated {
        std::fs::write(&path, text.replacen(current, &generated, 1)).expect("write docs/events.md");
    } else {
        assert!(
            current == generated,
            "docs/events.md is stale: run with KEYLEDGER_UPDATE_DOCS=1 and review the diff"
        );
    }

    let path = docs_dir().join("events.schema.json");
    let schema = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema(&config)).expect("JSON")
    );
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if update && current != schema {
        std::fs::write(&path, &schema).expect("write docs/events.schema.json");
    } else {
        assert!(
            current == schema,
            "docs/events.schema.json is stale: run with KEYLEDGER_UPDATE_DOCS=1"
        );
    }
}
