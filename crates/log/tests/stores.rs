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
