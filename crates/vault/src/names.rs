//! One claim of a name at a time per owner, so that the domain's "name taken" checks hold.
//!
//! A new key or saved source is its own stream (`api_key/<id>`, `source/<id>`): two
//! concurrent creations of the same name for one owner write different streams, read none the
//! other writes, and would otherwise both be decided against a state without the other. Every
//! path that creates a named thing (key create, issue, honeytoken; source save) holds its
//! owner's lock from decision to append. The vault is the log's only writer (the data
//! directory is locked), so a lock in this process is the whole truth; owners are spread over a
//! fixed set of locks, so different owners rarely wait.

use std::hash::{Hash, Hasher};

use keyledger_domain::{Actor, UserId};
use tokio::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

pub(crate) struct NameLocks(Box<[Mutex<()>]>);

impl Default for NameLocks {
    fn default() -> NameLocks {
        NameLocks((0..SHARDS).map(|_| Mutex::new(())).collect())
    }
}

impl NameLocks {
    /// Waits for the right to claim a name among `owner`'s keys and sources.
    pub(crate) async fn lock(&self, owner: &UserId) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        owner.hash(&mut hasher);
        let shard = (hasher.finish() % SHARDS as u64) as usize;
        self.0[shard].lock().await
    }

    /// [`NameLocks::lock`] for a name the actor claims for themself (the operator and the
    /// system create none: they share one lock, which the domain then refuses anyway).
    pub(crate) async fn lock_for(&self, actor: &Actor) -> MutexGuard<'_, ()> {
        match actor.user() {
            Some(owner) => self.lock(owner).await,
            None => self.0[0].lock().await,
        }
    }
}
