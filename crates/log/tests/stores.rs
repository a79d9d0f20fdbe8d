use crate::support::open;

#[test]
fn data_keys_put_get_remove_and_replace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let keys = log.data_keys();
    keys.put("cred-1", b"wrapped-1").expect("put");
    keys.put("cred-2", b"wrapped-2").expect("put");
    assert_eq!(
        keys.get("cred-1").expect("get"),
        Some(b"wrapped-1".to_vec())
    );
    assert_eq!(keys.get("missing").expect("get"), None);
    assert!(keys.remove("cred-1").expect("remove"));
    assert!(!keys.remove("cred-1").expect("remove again"));
    assert_eq!(keys.get("cred-1").expect("get"), None);
    keys.put("cred-3", b"wrapped-3").expect("put");
    assert_eq!(
        keys.iter().expect("iter"),
        vec![
            ("cred-2".to_owned(), b"wrapped-2".to_vec()),
            ("cred-3".to_owned(), b"wrapped-3".to_vec()),
        ]
    );
    keys.replace_all(vec![
        ("cred-3".to_owned(), b"rewrapped-3".to_vec()),
        ("cred-4".to_owned(), b"rewrapped-4".to_vec()),
    ])
    .expect("replace all");
    let debug = format!("{keys:?}");
    assert!(!debug.contains("wrapped"), "{debug}");
    drop(keys);
    log.close();

    let (log, _) = open(dir.path());
    assert_eq!(
        log.data_keys().iter().expect("iter"),
        vec![
            ("cred-3".to_owned(), b"rewrapped-3".to_vec()),
            ("cred-4".to_owned(), b"rewrapped-4".to_vec()),
        ]
    );
    // Outside the chain: nothing was appended.
    assert_eq!(log.head().0, 0);
}

#[test]
fn meta_records_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let meta = log.meta();
    meta.put("relay/nats", 42u64.to_be_bytes()).expect("put");
    meta.put(b"checkpoint", b"sig").expect("put");
    assert!(meta.remove("checkpoint").expect("remove"));
    assert!(!meta.remove("checkpoint").expect("remove again"));
    drop(meta);
    log.close();

    let (log, _) = open(dir.path());
    let meta = log.meta();
    assert_eq!(
        meta.get("relay/nats").expect("get"),
        Some(42u64.to_be_bytes().to_vec())
    );
    assert_eq!(meta.get("checkpoint").expect("get"), None);
}

#[test]
fn a_removed_data_key_is_gone_from_every_file_of_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let keys = log.data_keys();
    let shredded = b"SHREDDED-DATA-KEY-0123456789-abcdefghijklmnopqrstuvwxyz-canary";
    let kept = b"KEPT-DATA-KEY-0123456789-abcdefghijklmnopqrstuvwxyz-canary-kept";
    keys.put("cred-shredded", shredded).expect("put");
    keys.put("cred-kept", kept).expect("put");
    // Other writes to the database between the put and the removal, as in real use.
    for n in 0..50 {
        log.meta()
            .put(format!("noise-{n}"), vec![n as u8; 512])
            .expect("meta put");
    }
    assert!(keys.remove("cred-shredded").expect("remove"));
    drop(keys);
    log.close();

    let mut found_kept = false;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(shredded.len()).any(|w| w == shredded),
            "the destroyed key is still in {}",
            entry.display()
        );
        found_kept |= bytes.windows(kept.len()).any(|w| w == kept);
    }
    assert!(found_kept, "the test can see keys that were not destroyed");
    let (log, _) = open(dir.path());
    assert_eq!(log.data_keys().get("cred-shredded").expect("get"), None);
    assert_eq!(
        log.data_keys().get("cred-kept").expect("get"),
        Some(kept.to_vec())
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
