//! One creator of a key at a time per owner, so that the domain's "name taken" check holds.
//!
//! A new key is its own stream (`api_key/<id>`): two concurrent creations of the same name
//! for one owner write different streams, read none the other writes, and would otherwise
//! both be decided against a state without the other's key. Every path that creates a key
//! (create, issue, honeytoken) holds its owner's lock from decision to append. The vault is
//! the log's only writer (the data directory is locked), so a lock in this process is the
//! whole truth; owners are spread over a fixed set of locks, so different owners rarely wait.

use std::hash::{Hash, Hasher};

use keyledger_domain::{Actor, UserId};
use tokio::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

pub(crate) struct KeyNameLocks(Box<[Mutex<()>]>);

impl Default for KeyNameLocks {
    fn default() -> KeyNameLocks {
        KeyNameLocks((0..SHARDS).map(|_| Mutex::new(())).collect())
    }
}

impl KeyNameLocks {
    /// Waits for the right to create a key for `owner`.
    pub(crate) async fn lock(&self, owner: &UserId) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        owner.hash(&mut hasher);
        let shard = (hasher.finish() % SHARDS as u64) as usize;
        self.0[shard].lock().await
    }

    /// [`KeyNameLocks::lock`] for a key the actor creates for themself (the operator and the
    /// system create none: they share one lock, which the domain then refuses anyway).
    pub(crate) async fn lock_for(&self, actor: &Actor) -> MutexGuard<'_, ()> {
        match actor.user() {
            Some(owner) => self.lock(owner).await,
            None => self.0[0].lock().await,
        }
    }
}
