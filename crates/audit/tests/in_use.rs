//! Reading a data directory offline while a vault holds it is the typed `InUse`, which the
//! binary's commands turn into advice to ask the server instead.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_held_by_a_vault_is_in_use() {
    let test = vault().await;
    match keyledger_audit::open_log_offline(test.path()) {
        Err(keyledger_audit::AuditError::InUse(dir)) => assert_eq!(dir, test.path()),
        Err(other) => panic!("expected AuditError::InUse, got {other:?}"),
        Ok(_) => panic!("a held data directory opened offline"),
    }
}
